"""What a node runs with is visible as ROS parameters (`ros2 param list /arm_driver`), read-only,
from the one resolved config."""
from __future__ import annotations

import json

from conftest import write_config

from asyncrl_ros.nodes.common import config_parameters


def test_config_values_become_flat_ros_parameters_of_ros_types():
    flat = config_parameters({'mode': 'async2', 'task': {'action_cycle_ms': 40.0, 'name': 'reacher'},
                              'safety': {'joint_ranges': [[-0.5, 0.5], [-0.2, 1.0]], 'workspace_min': [],
                                         'workspace_max': [0.7, 0.3, 1]},
                              'sac': {'batch_size': 32}}, sections=('task', 'safety'))
    assert flat['mode'] == 'async2' and flat['task.action_cycle_ms'] == 40.0
    assert 'sac.batch_size' not in flat                     # a section this node does not read
    assert json.loads(flat['safety.joint_ranges']) == [[-0.5, 0.5], [-0.2, 1.0]]   # no nested arrays in ROS
    assert flat['safety.workspace_min'] == '[]'             # an empty array has no ROS type
    assert flat['safety.workspace_max'] == [0.7, 0.3, 1.0]  # one type: doubles


def test_a_node_shows_the_config_it_runs_with_read_only(tmp_path, start_node, ros_node):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters
    config = write_config(tmp_path, {'task': {'action_cycle_ms': 75.0}, 'safety': {'max_acceleration': 3.0}})
    start_node('arm_driver', config)

    def call(srv, name, request):
        client = ros_node.create_client(srv, f'/arm_driver/{name}')
        ros_node.spin_until(client.service_is_ready, 60, f'/arm_driver/{name}')
        # A first call can go unanswered when the server has not yet matched the client's
        # response reader (slow discovery on a loaded machine): ask again, not forever.
        for attempt in range(3):
            future = client.call_async(request)
            try:
                ros_node.spin_until(future.done, 20, name)
                return future.result()
            except AssertionError:
                if attempt == 2:
                    raise

    names = call(ListParameters, 'list_parameters', ListParameters.Request()).result.names
    assert {'task.action_cycle_ms', 'safety.max_acceleration', 'arm', 'mode'} <= set(names)
    assert not any(n.startswith('sac.') for n in names)     # the driver does not learn
    values = call(GetParameters, 'get_parameters', GetParameters.Request(
        names=['task.action_cycle_ms', 'safety.max_acceleration', 'safety.joint_ranges'])).values
    assert values[0].double_value == 75.0 and values[1].double_value == 3.0
    assert json.loads(values[2].string_value) == []   # the hardware's limits
    result = call(SetParameters, 'set_parameters', SetParameters.Request(parameters=[Parameter(
        name='task.action_cycle_ms',
        value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=10.0))])).results[0]
    assert not result.successful and 'read-only' in result.reason
