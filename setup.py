import os
from glob import glob

from setuptools import find_packages, setup

package_name = 'asyncrl_ros'

# The node executables: literal, so that building imports nothing from the package;
# test/test_settings.py checks that they are asyncrl_ros.learning.modes.entry_points() (plus bringup).
NODES = {
    'sim_world': 'asyncrl_ros.nodes.sim_world_node:main',
    'arm_driver': 'asyncrl_ros.nodes.arm_driver_node:main',
    'reward': 'asyncrl_ros.nodes.reward_node:main',
    'target_monitor': 'asyncrl_ros.nodes.target_monitor_node:main',
    'policy': 'asyncrl_ros.nodes.policy_node:main',
    'replay_sampler': 'asyncrl_ros.nodes.replay_sampler_node:main',
    'learner': 'asyncrl_ros.nodes.learner_node:main',
    'recorder': 'asyncrl_ros.nodes.recorder_node:main',
    'camera': 'asyncrl_ros.nodes.camera_node:main',
    'bringup': 'asyncrl_ros.run.bringup:main',
}

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(include=['asyncrl_ros', 'asyncrl_ros.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.py')),
        ('share/' + package_name + '/config', [f for f in glob('config/*') if os.path.isfile(f)]),
        ('share/' + package_name + '/config/overlays', glob('config/overlays/*.yaml')),
    ],
    package_data={package_name: ['../config/*.yaml', '../config/overlays/*.yaml']},
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='asyncrl_ros developers',
    maintainer_email='asyncrl-ros@users.noreply.github.com',
    description='Real-time SAC from pixels on robot arms, sync and async, over ROS 2.',
    license='Apache-2.0',
    entry_points={'console_scripts': [f'{name} = {target}' for name, target in NODES.items()]
                  + ['asyncrl = asyncrl_ros.run.bringup:main',
                     'asyncrl-compare = asyncrl_ros.run.compare:main',
                     'asyncrl-reproduce = asyncrl_ros.run.reproduce:main']},
)
