"""The recorder: rosbag2 (MCAP) bags read back with an independent reader (`mcap`,
`mcap-ros2-support`), from BagWriter directly and from a real graph over DDS."""
from __future__ import annotations

import json
import shutil
import signal

import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.records import Message as McapMessage
from mcap.stream_reader import StreamReader
from mcap_ros2.decoder import DecoderFactory
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import String

from asyncrl_ros.run.bag_writer import SUMMARY_NAME, BagError, BagWriter, free_bag_path
from asyncrl_ros.nodes.common import REWARD_QOS, SENSOR_QOS, TOPIC_IMAGE, TOPIC_REWARD, stamp_ns
from asyncrl_ros_interfaces.msg import Reward
from conftest import write_config

REWARD_TYPE = 'asyncrl_ros_interfaces/msg/Reward'


def read_bag(bag_dir):
    """{topic: [(log_time_ns, schema name, decoded message), ...]} in file order, + channel counts."""
    mcap_file, = bag_dir.glob('*.mcap')
    out: dict[str, list] = {}
    with mcap_file.open('rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        counts = {c.topic: summary.statistics.channel_message_counts.get(c.id, 0)
                  for c in summary.channels.values()}
        for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=False):
            out.setdefault(channel.topic, []).append((message.log_time, schema.name, decoded))
    return out, counts


def metadata_counts(bag_dir) -> dict:
    info = yaml.safe_load((bag_dir / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert info['version'] == 9 and info['storage_identifier'] == 'mcap'
    assert info['relative_file_paths'] == [f'{bag_dir.name}.mcap']
    counts = {t['topic_metadata']['name']: t['message_count']
              for t in info['topics_with_message_count']}
    assert info['message_count'] == sum(counts.values())
    return counts


def test_bag_writer_roundtrip_and_cut_off_bag(tmp_path):
    bag = BagWriter(tmp_path / 'bag', chunk_bytes=8192)
    # Our type's definition comes from its .msg text; its hash must be rosidl's, or
    # `ros2 bag play` would refuse to match the recorded topic with live endpoints.
    rosidl = json.loads(next(d / 'asyncrl_ros_interfaces/msg/Reward.json' for d in bag.search_dirs
                             if (d / 'asyncrl_ros_interfaces/msg/Reward.json').exists()).read_text())
    assert bag.type_hash(REWARD_TYPE) == rosidl['type_hashes'][0]['hash_string']
    bag.add_topic('/reward', REWARD_TYPE, [{'reliability': 'reliable', 'depth': 100}])
    bag.add_topic('/img', 'sensor_msgs/msg/Image', [{'reliability': 'best_effort'}])
    for i in range(50):
        msg = Reward(reward=0.5 * i, mask_fraction=i / 100)
        msg.header.stamp.sec = i
        assert bag.write('/reward', 1000 + i, serialize_message(msg))
        img = Image(height=1, width=1000, encoding='mono8', step=1000, data=bytes([i]) * 1000)
        assert bag.write('/img', 990 + i, serialize_message(img))   # earlier stamp: kept monotonic
    bag.flush()
    for i in range(3):   # left in the pending chunk
        bag.write('/reward', 2000 + i, serialize_message(Reward(reward=-1.0)))

    # A recorder killed now (SIGKILL) leaves this file: everything up to the last chunk reads.
    cut = tmp_path / 'cut.mcap'
    shutil.copy(tmp_path / 'bag' / 'bag.mcap', cut)
    found = []
    with cut.open('rb') as f:
        with pytest.raises(McapError):
            for record in StreamReader(f).records:
                if isinstance(record, McapMessage):
                    found.append(record.log_time)
    assert len(found) == 100 and found == sorted(found)

    summary = bag.close({'note': 'x'})
    assert summary['topics']['/reward']['received'] == summary['topics']['/reward']['written'] == 53
    assert json.loads((tmp_path / 'bag' / SUMMARY_NAME).read_text())['note'] == 'x'
    msgs, counts = read_bag(tmp_path / 'bag')
    assert counts == {'/reward': 53, '/img': 50} == metadata_counts(tmp_path / 'bag')
    rewards = msgs['/reward']
    assert rewards[7][1] == REWARD_TYPE
    assert (rewards[7][2].reward, rewards[7][2].header.stamp.sec) == (3.5, 7)
    assert bytes(msgs['/img'][9][2].data) == bytes([9]) * 1000
    assert [t for t, _, _ in msgs['/img']] == [1000 + i for i in range(50)]

    with pytest.raises(BagError, match='exists'):
        BagWriter(tmp_path / 'bag')
    assert free_bag_path(tmp_path / 'bag') == tmp_path / 'bag_2'
    fresh = BagWriter(tmp_path / 'other')
    with pytest.raises(BagError, match='no definition'):
        fresh.add_topic('/x', 'nopkg/msg/Nothing')


def recorder_status(diagnostics: list) -> dict:
    """The recorder's latest /diagnostics: {topic: (received, written, failed, lost), 'level': ...}."""
    for array in reversed(diagnostics):
        for status in array.status:
            if status.name == 'recorder: bag':
                return {v.key.split()[0]: tuple(map(int, v.value.split('/')))
                        for v in status.values if v.key.startswith('/')} | {'level': status.level}
    return {}


def start_recorder(tmp_path, start_node, ros_node, wait_for: str, params: dict | None = None):
    cfg = write_config(tmp_path, {'sim': {'real_time_factor': 1.0}})
    start_node('sim_world', cfg)
    start_node('reward', cfg, {'use_sim_time': True})
    rec = start_node('recorder', cfg, {'bag_path': tmp_path / 'bag', 'use_sim_time': True,
                                       **(params or {})})
    diagnostics = []
    ros_node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 50)
    ros_node.spin_until(lambda: recorder_status(diagnostics).get(wait_for, (0, 0))[1] > 0, 60,
                        f'the recorder writing {wait_for}')
    return rec, diagnostics


def test_records_graph_and_closes_on_sigint(tmp_path, start_node, ros_node):
    images, rewards = {}, {}
    ros_node.create_subscription(Image, TOPIC_IMAGE,
                                 lambda m: images.setdefault(stamp_ns(m.header.stamp), m), SENSOR_QOS)
    ros_node.create_subscription(Reward, TOPIC_REWARD,
                                 lambda m: rewards.setdefault(stamp_ns(m.header.stamp), m), REWARD_QOS)
    rec, diagnostics = start_recorder(tmp_path, start_node, ros_node, TOPIC_REWARD)
    ros_node.spin_for(5.0)
    assert recorder_status(diagnostics)['level'] == DiagnosticStatus.OK   # nothing failed or lost
    rec.proc.send_signal(signal.SIGINT)
    assert rec.proc.wait(timeout=20) == 0
    bag = tmp_path / 'bag'

    summary = json.loads((bag / SUMMARY_NAME).read_text())
    assert summary['timestamps'] == 'sim time (receive)'
    msgs, counts = read_bag(bag)
    received = {t: s['received'] for t, s in summary['topics'].items()}
    assert counts == received == metadata_counts(bag)
    assert all(s['written'] == s['received'] and s['failed'] == 0 for s in summary['topics'].values())
    assert {'/camera/image_raw', '/joint_states', '/reward', '/reward/mask',
            '/diagnostics'} <= set(msgs)
    assert '/clock' not in msgs
    types = {t: {name for _, name, _ in m} for t, m in msgs.items()}
    assert types['/camera/image_raw'] == {'sensor_msgs/msg/Image'}
    assert types['/joint_states'] == {'sensor_msgs/msg/JointState'}
    assert types['/reward'] == {REWARD_TYPE}
    assert types['/diagnostics'] == {'diagnostic_msgs/msg/DiagnosticArray'}
    assert counts['/camera/image_raw'] >= 50 and counts['/reward'] >= 50   # ~25 Hz for > 5 s
    in_file_order = []
    with next(bag.glob('*.mcap')).open('rb') as f:
        for _, _, message in make_reader(f).iter_messages(log_time_order=False):
            in_file_order.append(message.log_time)
    assert len(in_file_order) == sum(counts.values())
    assert in_file_order == sorted(in_file_order)   # monotonic as written

    # Same images and rewards as a live subscriber saw; bag time is the sim receive time.
    bag_images = {stamp_ns(m.header.stamp): (t, m) for t, _, m in msgs['/camera/image_raw']}
    common = sorted(set(bag_images) & set(images))
    assert len(common) >= 20
    t, img = bag_images[common[len(common) // 2]]
    live = images[common[len(common) // 2]]
    fields = ('width', 'height', 'encoding', 'step')
    assert [getattr(img, f) for f in fields] == [getattr(live, f) for f in fields]
    assert bytes(img.data) == bytes(live.data)
    assert abs(t - stamp_ns(live.header.stamp)) < 5e9   # sim time, not the system clock
    bag_rewards = {stamp_ns(m.header.stamp): m for _, _, m in msgs['/reward']}
    # Each reward carries its image's stamp. The image subscriptions (recorder's and ours)
    # may match the camera later than the recorder's reward subscription matched the reward
    # node, so the first rewards in the bag can be for frames no one here received.
    seen = set(bag_images) | set(images)
    assert {s for s in bag_rewards if s >= min(seen)} <= seen
    shared = sorted(set(bag_rewards) & set(rewards))
    assert len(shared) >= 20
    for stamp in shared[:: max(1, len(shared) // 5)]:
        assert bag_rewards[stamp].reward == rewards[stamp].reward
        assert bag_rewards[stamp].mask_fraction == rewards[stamp].mask_fraction


def test_sigterm_closes_cleanly_and_warns_of_unrecordable_publishers(tmp_path, start_node, ros_node):
    rec, diagnostics = start_recorder(tmp_path, start_node, ros_node, '/joint_states', {
        'topics': '[/joint_states, /reward, /nobody/publishes_this, /recorder_test/qos]'})
    reliable = ros_node.create_publisher(String, '/recorder_test/qos', 10)
    ros_node.spin_until(lambda: '/recorder_test/qos' in recorder_status(diagnostics), 10,
                        'the recorder subscribing /recorder_test/qos')
    # Discovery is two-sided: publish only once our writer has matched the recorder's reader.
    ros_node.spin_until(lambda: reliable.get_subscription_count() > 0, 10,
                        'our publisher matching the recorder')
    reliable.publish(String(data='recorded'))
    # The recorder subscribed reliable; a best-effort publisher cannot reach it: it says so.
    ros_node.create_publisher(String, '/recorder_test/qos', SENSOR_QOS, event_callbacks=
                              PublisherEventCallbacks(incompatible_qos=lambda _: None))
    ros_node.spin_until(lambda: recorder_status(diagnostics)['level'] == DiagnosticStatus.WARN, 10,
                        'a WARN about the incompatible publisher')
    rec.proc.send_signal(signal.SIGTERM)
    assert rec.proc.wait(timeout=20) == 0
    bag = tmp_path / 'bag'
    summary = json.loads((bag / SUMMARY_NAME).read_text())
    msgs, counts = read_bag(bag)
    assert set(counts) == {'/joint_states', '/reward', '/recorder_test/qos'}
    assert counts['/joint_states'] > 0 and msgs['/recorder_test/qos'][0][2].data == 'recorded'
    assert counts == metadata_counts(bag) == {t: s['received'] for t, s in summary['topics'].items()}
    assert summary['not_recorded'] == {'/nobody/publishes_this': 'no publisher seen'}
    assert summary['incompatible_qos_events'] == {'/recorder_test/qos': 1}
    assert 'closed' in rec.output() and 'incompatible' in rec.output()


def test_recording_pauses_and_resumes_through_the_parameter_service(tmp_path, start_node, ros_node):
    """record on/off at runtime: `ros2 param set /recorder recording false` (here via the
    real SetParameters service) stops writing; skipped messages are counted, not lost."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from std_msgs.msg import Float64MultiArray as Cmd
    from asyncrl_ros.nodes.common import COMMAND_QOS, TOPIC_POLICY_COMMAND
    cfg = write_config(tmp_path)
    bag = tmp_path / 'bag'
    # Only the command topic: /diagnostics and /rosout (the recorder's own included) also arrive
    # while paused, and would be counted as skipped beside the commands.
    rec = start_node('recorder', cfg, {'bag_path': str(bag), 'topics': [TOPIC_POLICY_COMMAND]})
    pub = ros_node.create_publisher(Cmd, TOPIC_POLICY_COMMAND, COMMAND_QOS)
    ros_node.spin_until(lambda: pub.get_subscription_count() > 0, 30, 'the recorder to subscribe')
    client = ros_node.create_client(SetParameters, '/recorder/set_parameters')
    ros_node.spin_until(client.service_is_ready, 30, 'the parameter service')

    def set_recording(on: bool):
        value = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=on)
        future = client.call_async(SetParameters.Request(
            parameters=[Parameter(name='recording', value=value)]))
        ros_node.spin_until(future.done, 10, 'set_parameters')
        assert future.result().results[0].successful

    diagnostics = []
    ros_node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 50)

    def handled() -> int:
        """Messages the recorder has taken (written or skipped), from its latest /diagnostics."""
        for array in reversed(diagnostics):
            for status in array.status:
                if status.name == 'recorder: bag':
                    values = {v.key: v.value for v in status.values}
                    return int(values['received']) + int(values['skipped while paused'])
        return 0

    sent = 0

    def send(n):
        # The parameter service and the topic are separate channels: wait until the recorder has
        # taken every message before flipping the switch, or one in flight lands on the other side.
        nonlocal sent
        for i in range(n):
            pub.publish(Cmd(data=[float(i)]))
            ros_node.spin_for(0.02)
        sent += n
        ros_node.spin_until(lambda: handled() >= sent, 30, f'the recorder to take {sent} messages')

    send(10)
    # A wrong type is refused by the parameter service (validation); recording stays on.
    bad = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value='maybe')
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name='recording',
                                                                           value=bad)]))
    ros_node.spin_until(future.done, 10, 'set_parameters')
    assert not future.result().results[0].successful
    set_recording(False)
    send(7)
    set_recording(True)
    send(5)
    ros_node.spin_for(0.5)
    rec.stop()
    summary = json.loads((bag / 'recorder_summary.json').read_text())
    assert summary['skipped_while_paused'] == 7
    written = summary['topics'][TOPIC_POLICY_COMMAND]['written']
    assert written == 15
