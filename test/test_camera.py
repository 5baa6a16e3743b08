"""Camera capture with a real OpenCV VideoCapture on a video file written here (no webcam
on this machine): the core reader, then the camera node over real DDS."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image

from asyncrl_ros.robot.camera import Camera, CameraError, parse_device
from asyncrl_ros.nodes.common import SENSOR_QOS, TOPIC_IMAGE, image_to_numpy, stamp_ns
from conftest import write_config

N_FRAMES, BITS, FPS = 60, 6, 25.0


def write_video(path: Path, n: int = N_FRAMES, size: tuple[int, int] = (320, 240)) -> Path:
    """MJPG video whose frame i shows a red top band and i in binary as white/black columns:
    blocks this large survive JPEG and any resize to the image size."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), FPS, (w, h))
    assert writer.isOpened()
    for i in range(n):
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[:h // 4] = (0, 0, 255)
        for bit in range(BITS):
            if i >> bit & 1:
                bgr[h // 2:, bit * w // BITS:(bit + 1) * w // BITS] = 255
        writer.write(bgr)
    writer.release()
    return path


def frame_index(rgb: np.ndarray) -> int:
    h, w = rgb.shape[:2]
    y = 3 * h // 4
    return sum(1 << bit for bit in range(BITS)
               if rgb[y - 2:y + 3, (2 * bit + 1) * w // (2 * BITS)].mean() > 128)


def assert_red_band(rgb: np.ndarray):
    band = rgb[:rgb.shape[0] // 8].reshape(-1, 3).mean(axis=0)
    assert band[0] > 200 and band[1] < 60 and band[2] < 60, f'top band not red in RGB: {band}'


@pytest.fixture
def video(tmp_path):
    return write_video(tmp_path / 'cam.avi')


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.01)


# ---- core ----

def test_frames_are_rgb_resized_in_order(video):
    frames, seq = [], -1
    with Camera(str(video), 160, 90) as cam:
        while len(frames) < 20:
            frame = cam.wait_newer(seq, timeout=10.0)
            assert frame is not None, 'no new frame in 10 s'
            frames.append(frame)
            seq = frame.seq
    for f in frames:
        assert f.image.shape == (90, 160, 3) and f.image.dtype == np.uint8
        assert_red_band(f.image)
        # First pass of the file: the pixels say which frame this is.
        assert frame_index(f.image) == f.seq
    assert np.all(np.diff([f.seq for f in frames]) > 0)
    assert np.all(np.diff([f.stamp for f in frames]) > 0)


def test_slow_reader_gets_only_the_newest_frame(video):
    # Unpaced, the whole file is read at once: a consumer that looks afterwards must get
    # the last frame, not a queue starting at the first.
    with Camera(str(video), 160, 90, realtime=False, max_failures=1,
                backoff_s=(60.0, 60.0)) as cam:
        wait(lambda: not cam.connected, 10, 'end of file')
        newest = cam.latest()
        assert newest.seq == N_FRAMES - 1 and frame_index(newest.image) == N_FRAMES - 1
        assert cam.latest() is newest
        assert cam.wait_newer(newest.seq, timeout=0.2) is None
        assert 'end of stream' in cam.last_error and cam.reopens == 0


def test_dead_device_is_reopened_with_backoff(video, tmp_path):
    device = tmp_path / 'dev.avi'
    shutil.copy(video, device)
    with Camera(str(device), 160, 90, realtime=False, max_failures=3,
                backoff_s=(0.05, 0.2)) as cam:
        device.unlink()  # unplugged: the open handle reads to its end, then nothing
        wait(lambda: 'does not exist' in cam.last_error, 10, 'a failed reopen')
        assert not cam.connected and cam.reopens == 0
        assert cam.latest().seq == N_FRAMES - 1
        shutil.copy(video, device)  # plugged back in
        frame = cam.wait_newer(N_FRAMES - 1, timeout=10.0)
        assert frame is not None and cam.reopens == 1
        # Sequence numbers go on across the reopen; the file itself starts again.
        assert frame_index(frame.image) == frame.seq - N_FRAMES


def test_missing_or_bad_device_raises(tmp_path):
    with pytest.raises(CameraError, match="'.*nope.avi' does not exist"):
        Camera(str(tmp_path / 'nope.avi'), 160, 90).start()
    text = tmp_path / 'notes.txt'
    text.write_text('not a video')
    with pytest.raises(CameraError, match='cannot open camera device .*notes.txt'):
        Camera(str(text), 160, 90).start()
    with pytest.raises(CameraError, match='cannot open camera index 7'):
        Camera('7', 160, 90).start()
    with pytest.raises(ValueError, match='size'):
        Camera('0', 0, 90)


def test_parse_device():
    assert parse_device('0') == 0 and parse_device(2) == 2
    assert parse_device(' /dev/video2 ') == '/dev/video2'
    assert parse_device('rtsp://cam/stream') == 'rtsp://cam/stream'
    with pytest.raises(CameraError, match='empty'):
        parse_device('')
    with pytest.raises(CameraError, match='>= 0'):
        parse_device(-1)


# ---- node over DDS ----

def test_node_publishes_each_frame_once_stamped_in_ros_time(video, tmp_path, start_node, ros_node):
    # The size comes from the experiment config (the sac crop must fit inside it).
    cfg = write_config(tmp_path, {'image': {'width': 128, 'height': 72},
                                  'sac': {'crop_height': 64, 'crop_width': 120}})
    start_node('camera', cfg, {'device': str(video), 'frame_id': 'wrist_cam'})
    images = []
    ros_node.create_subscription(Image, TOPIC_IMAGE, images.append, SENSOR_QOS)
    ros_node.spin_until(lambda: len(images) >= 30, 60, '30 camera images')

    now = ros_node.get_clock().now().nanoseconds
    stamps = np.array([stamp_ns(m.header.stamp) for m in images])
    # Strictly increasing capture stamps: no frame was published twice.
    assert np.all(np.diff(stamps) > 0)
    # ROS (system) time, not the monotonic clock the capture thread could have used.
    assert abs(now - stamps[-1]) < 10e9
    indices = []
    for m in images:
        assert (m.width, m.height, m.encoding, m.step) == (128, 72, 'rgb8', 128 * 3)
        assert m.header.frame_id == 'wrist_cam'
        rgb = image_to_numpy(m)
        assert_red_band(rgb)
        indices.append(frame_index(rgb))
    # Consecutive images are different frames of the file (it loops when it ends).
    assert all(a != b for a, b in zip(indices, indices[1:]))


@pytest.mark.parametrize('device, message', [
    ('missing.avi', "camera device '.*missing.avi' does not exist"),
    ('7', 'cannot open camera index 7'),
])
def test_node_exits_2_on_bad_device(device, message, tmp_path, start_node):
    if device.endswith('.avi'):
        device = str(tmp_path / device)
    node = start_node('camera', write_config(tmp_path), {'device': device})
    assert node.proc.wait(timeout=60) == 2
    out = node.output()
    errors = [line for line in out.splitlines() if line.startswith('[camera] error:')]
    assert len(errors) == 1 and re.search(message, errors[0]), out
    assert 'Traceback' not in out
