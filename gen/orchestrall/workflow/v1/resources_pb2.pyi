import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_PENDING: _ClassVar[RunState]
    RUN_STATE_RUNNING: _ClassVar[RunState]
    RUN_STATE_SUCCEEDED: _ClassVar[RunState]
    RUN_STATE_FAILED: _ClassVar[RunState]
    RUN_STATE_SKIPPED: _ClassVar[RunState]
    RUN_STATE_CANCELLED: _ClassVar[RunState]
    RUN_STATE_WAITING: _ClassVar[RunState]

class OverlapPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERLAP_POLICY_UNSPECIFIED: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_SKIP: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_BUFFER_ONE: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_ALLOW_ALL: _ClassVar[OverlapPolicy]
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_PENDING: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_SUCCEEDED: RunState
RUN_STATE_FAILED: RunState
RUN_STATE_SKIPPED: RunState
RUN_STATE_CANCELLED: RunState
RUN_STATE_WAITING: RunState
OVERLAP_POLICY_UNSPECIFIED: OverlapPolicy
OVERLAP_POLICY_SKIP: OverlapPolicy
OVERLAP_POLICY_BUFFER_ONE: OverlapPolicy
OVERLAP_POLICY_ALLOW_ALL: OverlapPolicy

class Workflow(_message.Message):
    __slots__ = ("name", "display_name", "steps", "create_time", "output_template", "run_timeout", "revision_id", "revision_create_time")
    class RetryPolicy(_message.Message):
        __slots__ = ("max_attempts", "initial_backoff", "max_backoff", "backoff_multiplier", "retryable_reasons")
        MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
        INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
        MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
        BACKOFF_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
        RETRYABLE_REASONS_FIELD_NUMBER: _ClassVar[int]
        max_attempts: int
        initial_backoff: _duration_pb2.Duration
        max_backoff: _duration_pb2.Duration
        backoff_multiplier: float
        retryable_reasons: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, max_attempts: _Optional[int] = ..., initial_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., backoff_multiplier: _Optional[float] = ..., retryable_reasons: _Optional[_Iterable[str]] = ...) -> None: ...
    class AgentRun(_message.Message):
        __slots__ = ("agent", "input_template")
        AGENT_FIELD_NUMBER: _ClassVar[int]
        INPUT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
        agent: str
        input_template: str
        def __init__(self, agent: _Optional[str] = ..., input_template: _Optional[str] = ...) -> None: ...
    class ToolCall(_message.Message):
        __slots__ = ("tool", "arguments_template")
        TOOL_FIELD_NUMBER: _ClassVar[int]
        ARGUMENTS_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
        tool: str
        arguments_template: str
        def __init__(self, tool: _Optional[str] = ..., arguments_template: _Optional[str] = ...) -> None: ...
    class Condition(_message.Message):
        __slots__ = ("expression", "then_steps", "else_steps")
        EXPRESSION_FIELD_NUMBER: _ClassVar[int]
        THEN_STEPS_FIELD_NUMBER: _ClassVar[int]
        ELSE_STEPS_FIELD_NUMBER: _ClassVar[int]
        expression: str
        then_steps: _containers.RepeatedScalarFieldContainer[str]
        else_steps: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, expression: _Optional[str] = ..., then_steps: _Optional[_Iterable[str]] = ..., else_steps: _Optional[_Iterable[str]] = ...) -> None: ...
    class Map(_message.Message):
        __slots__ = ("items", "agent_run", "tool_call", "max_concurrency")
        ITEMS_FIELD_NUMBER: _ClassVar[int]
        AGENT_RUN_FIELD_NUMBER: _ClassVar[int]
        TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
        MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
        items: str
        agent_run: Workflow.AgentRun
        tool_call: Workflow.ToolCall
        max_concurrency: int
        def __init__(self, items: _Optional[str] = ..., agent_run: _Optional[_Union[Workflow.AgentRun, _Mapping]] = ..., tool_call: _Optional[_Union[Workflow.ToolCall, _Mapping]] = ..., max_concurrency: _Optional[int] = ...) -> None: ...
    class Wait(_message.Message):
        __slots__ = ("duration", "time")
        DURATION_FIELD_NUMBER: _ClassVar[int]
        TIME_FIELD_NUMBER: _ClassVar[int]
        duration: _duration_pb2.Duration
        time: str
        def __init__(self, duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., time: _Optional[str] = ...) -> None: ...
    class Approval(_message.Message):
        __slots__ = ("prompt_template", "timeout", "approve_on_timeout")
        PROMPT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        APPROVE_ON_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        prompt_template: str
        timeout: _duration_pb2.Duration
        approve_on_timeout: bool
        def __init__(self, prompt_template: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., approve_on_timeout: _Optional[bool] = ...) -> None: ...
    class Notification(_message.Message):
        __slots__ = ("channel", "message_template")
        CHANNEL_FIELD_NUMBER: _ClassVar[int]
        MESSAGE_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
        channel: str
        message_template: str
        def __init__(self, channel: _Optional[str] = ..., message_template: _Optional[str] = ...) -> None: ...
    class SubWorkflow(_message.Message):
        __slots__ = ("workflow", "input_template")
        WORKFLOW_FIELD_NUMBER: _ClassVar[int]
        INPUT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
        workflow: str
        input_template: str
        def __init__(self, workflow: _Optional[str] = ..., input_template: _Optional[str] = ...) -> None: ...
    class Compensation(_message.Message):
        __slots__ = ("agent_run", "tool_call", "notification")
        AGENT_RUN_FIELD_NUMBER: _ClassVar[int]
        TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
        NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
        agent_run: Workflow.AgentRun
        tool_call: Workflow.ToolCall
        notification: Workflow.Notification
        def __init__(self, agent_run: _Optional[_Union[Workflow.AgentRun, _Mapping]] = ..., tool_call: _Optional[_Union[Workflow.ToolCall, _Mapping]] = ..., notification: _Optional[_Union[Workflow.Notification, _Mapping]] = ...) -> None: ...
    class Step(_message.Message):
        __slots__ = ("id", "depends_on", "agent_run", "tool_call", "condition", "map", "wait", "approval", "notification", "sub_workflow", "retry_policy", "timeout", "compensation")
        ID_FIELD_NUMBER: _ClassVar[int]
        DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
        AGENT_RUN_FIELD_NUMBER: _ClassVar[int]
        TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
        CONDITION_FIELD_NUMBER: _ClassVar[int]
        MAP_FIELD_NUMBER: _ClassVar[int]
        WAIT_FIELD_NUMBER: _ClassVar[int]
        APPROVAL_FIELD_NUMBER: _ClassVar[int]
        NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
        SUB_WORKFLOW_FIELD_NUMBER: _ClassVar[int]
        RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        COMPENSATION_FIELD_NUMBER: _ClassVar[int]
        id: str
        depends_on: _containers.RepeatedScalarFieldContainer[str]
        agent_run: Workflow.AgentRun
        tool_call: Workflow.ToolCall
        condition: Workflow.Condition
        map: Workflow.Map
        wait: Workflow.Wait
        approval: Workflow.Approval
        notification: Workflow.Notification
        sub_workflow: Workflow.SubWorkflow
        retry_policy: Workflow.RetryPolicy
        timeout: _duration_pb2.Duration
        compensation: Workflow.Compensation
        def __init__(self, id: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., agent_run: _Optional[_Union[Workflow.AgentRun, _Mapping]] = ..., tool_call: _Optional[_Union[Workflow.ToolCall, _Mapping]] = ..., condition: _Optional[_Union[Workflow.Condition, _Mapping]] = ..., map: _Optional[_Union[Workflow.Map, _Mapping]] = ..., wait: _Optional[_Union[Workflow.Wait, _Mapping]] = ..., approval: _Optional[_Union[Workflow.Approval, _Mapping]] = ..., notification: _Optional[_Union[Workflow.Notification, _Mapping]] = ..., sub_workflow: _Optional[_Union[Workflow.SubWorkflow, _Mapping]] = ..., retry_policy: _Optional[_Union[Workflow.RetryPolicy, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., compensation: _Optional[_Union[Workflow.Compensation, _Mapping]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    RUN_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    steps: _containers.RepeatedCompositeFieldContainer[Workflow.Step]
    create_time: _timestamp_pb2.Timestamp
    output_template: str
    run_timeout: _duration_pb2.Duration
    revision_id: str
    revision_create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[Workflow.Step, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., output_template: _Optional[str] = ..., run_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., revision_id: _Optional[str] = ..., revision_create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WorkflowRun(_message.Message):
    __slots__ = ("name", "input", "state", "steps", "output", "error", "create_time", "end_time", "revision_id", "trigger")
    class StepRun(_message.Message):
        __slots__ = ("step_id", "state", "input", "output", "agent_run", "error", "start_time", "end_time", "attempts", "compensated")
        STEP_ID_FIELD_NUMBER: _ClassVar[int]
        STATE_FIELD_NUMBER: _ClassVar[int]
        INPUT_FIELD_NUMBER: _ClassVar[int]
        OUTPUT_FIELD_NUMBER: _ClassVar[int]
        AGENT_RUN_FIELD_NUMBER: _ClassVar[int]
        ERROR_FIELD_NUMBER: _ClassVar[int]
        START_TIME_FIELD_NUMBER: _ClassVar[int]
        END_TIME_FIELD_NUMBER: _ClassVar[int]
        ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
        COMPENSATED_FIELD_NUMBER: _ClassVar[int]
        step_id: str
        state: RunState
        input: str
        output: str
        agent_run: str
        error: _status_pb2.Status
        start_time: _timestamp_pb2.Timestamp
        end_time: _timestamp_pb2.Timestamp
        attempts: int
        compensated: bool
        def __init__(self, step_id: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., input: _Optional[str] = ..., output: _Optional[str] = ..., agent_run: _Optional[str] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., compensated: _Optional[bool] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    name: str
    input: str
    state: RunState
    steps: _containers.RepeatedCompositeFieldContainer[WorkflowRun.StepRun]
    output: str
    error: _status_pb2.Status
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    revision_id: str
    trigger: str
    def __init__(self, name: _Optional[str] = ..., input: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., steps: _Optional[_Iterable[_Union[WorkflowRun.StepRun, _Mapping]]] = ..., output: _Optional[str] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision_id: _Optional[str] = ..., trigger: _Optional[str] = ...) -> None: ...

class WorkflowRunEvent(_message.Message):
    __slots__ = ("name", "sequence", "type", "step_id", "time", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    sequence: int
    type: str
    step_id: str
    time: _timestamp_pb2.Timestamp
    data: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., sequence: _Optional[int] = ..., type: _Optional[str] = ..., step_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class WorkflowRunGraph(_message.Message):
    __slots__ = ("name", "mermaid")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MERMAID_FIELD_NUMBER: _ClassVar[int]
    name: str
    mermaid: str
    def __init__(self, name: _Optional[str] = ..., mermaid: _Optional[str] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("name", "cron", "time_zone", "input", "overlap_policy", "catchup_window", "paused", "next_fire_times", "last_fire_time", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_POLICY_FIELD_NUMBER: _ClassVar[int]
    CATCHUP_WINDOW_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_TIMES_FIELD_NUMBER: _ClassVar[int]
    LAST_FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    cron: str
    time_zone: str
    input: str
    overlap_policy: OverlapPolicy
    catchup_window: _duration_pb2.Duration
    paused: bool
    next_fire_times: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    last_fire_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., cron: _Optional[str] = ..., time_zone: _Optional[str] = ..., input: _Optional[str] = ..., overlap_policy: _Optional[_Union[OverlapPolicy, str]] = ..., catchup_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., paused: _Optional[bool] = ..., next_fire_times: _Optional[_Iterable[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]]] = ..., last_fire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Trigger(_message.Message):
    __slots__ = ("name", "url_path", "secret", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_PATH_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    url_path: str
    secret: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., url_path: _Optional[str] = ..., secret: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
