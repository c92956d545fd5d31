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

class ToolChoice(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_CHOICE_UNSPECIFIED: _ClassVar[ToolChoice]
    TOOL_CHOICE_AUTO: _ClassVar[ToolChoice]
    TOOL_CHOICE_REQUIRED: _ClassVar[ToolChoice]
TOOL_CHOICE_UNSPECIFIED: ToolChoice
TOOL_CHOICE_AUTO: ToolChoice
TOOL_CHOICE_REQUIRED: ToolChoice

class Agent(_message.Message):
    __slots__ = ("name", "display_name", "model", "instructions", "tools", "temperature", "max_output_tokens", "tool_choice", "create_time", "revision_id", "revision_create_time", "approval_required_tools", "template")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_REQUIRED_TOOLS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    model: str
    instructions: str
    tools: _containers.RepeatedScalarFieldContainer[str]
    temperature: float
    max_output_tokens: int
    tool_choice: ToolChoice
    create_time: _timestamp_pb2.Timestamp
    revision_id: str
    revision_create_time: _timestamp_pb2.Timestamp
    approval_required_tools: _containers.RepeatedScalarFieldContainer[str]
    template: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., model: _Optional[str] = ..., instructions: _Optional[str] = ..., tools: _Optional[_Iterable[str]] = ..., temperature: _Optional[float] = ..., max_output_tokens: _Optional[int] = ..., tool_choice: _Optional[_Union[ToolChoice, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision_id: _Optional[str] = ..., revision_create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., approval_required_tools: _Optional[_Iterable[str]] = ..., template: _Optional[str] = ...) -> None: ...

class AgentTemplate(_message.Message):
    __slots__ = ("name", "display_name", "industry", "description", "instructions", "tools", "tool_choice", "example_input")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    INDUSTRY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_INPUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    industry: str
    description: str
    instructions: str
    tools: _containers.RepeatedScalarFieldContainer[str]
    tool_choice: ToolChoice
    example_input: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., industry: _Optional[str] = ..., description: _Optional[str] = ..., instructions: _Optional[str] = ..., tools: _Optional[_Iterable[str]] = ..., tool_choice: _Optional[_Union[ToolChoice, str]] = ..., example_input: _Optional[str] = ...) -> None: ...

class AgentRevision(_message.Message):
    __slots__ = ("name", "snapshot", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    snapshot: Agent
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., snapshot: _Optional[_Union[Agent, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("name", "description", "parameters", "function_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters: _struct_pb2.Struct
    function_name: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., function_name: _Optional[str] = ...) -> None: ...

class McpServer(_message.Message):
    __slots__ = ("name", "display_name", "url", "headers", "header_names", "allowed_tools", "create_time", "update_time")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    HEADER_NAMES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_TOOLS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    url: str
    headers: _containers.ScalarMap[str, str]
    header_names: _containers.RepeatedScalarFieldContainer[str]
    allowed_tools: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., url: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., header_names: _Optional[_Iterable[str]] = ..., allowed_tools: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("id", "tool", "arguments", "result", "failed")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    id: str
    tool: str
    arguments: str
    result: str
    failed: bool
    def __init__(self, id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments: _Optional[str] = ..., result: _Optional[str] = ..., failed: _Optional[bool] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "model_calls")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    model_calls: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., model_calls: _Optional[int] = ...) -> None: ...

class Citation(_message.Message):
    __slots__ = ("tool_call_id", "document", "document_display_name", "section", "chunk_index", "score")
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SECTION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    document: str
    document_display_name: str
    section: str
    chunk_index: int
    score: float
    def __init__(self, tool_call_id: _Optional[str] = ..., document: _Optional[str] = ..., document_display_name: _Optional[str] = ..., section: _Optional[str] = ..., chunk_index: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("name", "input", "output", "state", "tool_calls", "usage", "model", "tools_enabled", "error", "create_time", "end_time", "agent_revision", "thread", "pending_tool_calls", "citations")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Run.State]
        STATE_RUNNING: _ClassVar[Run.State]
        STATE_SUCCEEDED: _ClassVar[Run.State]
        STATE_FAILED: _ClassVar[Run.State]
        STATE_REQUIRES_ACTION: _ClassVar[Run.State]
        STATE_CANCELLED: _ClassVar[Run.State]
    STATE_UNSPECIFIED: Run.State
    STATE_RUNNING: Run.State
    STATE_SUCCEEDED: Run.State
    STATE_FAILED: Run.State
    STATE_REQUIRES_ACTION: Run.State
    STATE_CANCELLED: Run.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOOLS_ENABLED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    AGENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    PENDING_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    input: str
    output: str
    state: Run.State
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    usage: Usage
    model: str
    tools_enabled: bool
    error: _status_pb2.Status
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    agent_revision: str
    thread: str
    pending_tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    citations: _containers.RepeatedCompositeFieldContainer[Citation]
    def __init__(self, name: _Optional[str] = ..., input: _Optional[str] = ..., output: _Optional[str] = ..., state: _Optional[_Union[Run.State, str]] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., model: _Optional[str] = ..., tools_enabled: _Optional[bool] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., agent_revision: _Optional[str] = ..., thread: _Optional[str] = ..., pending_tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., citations: _Optional[_Iterable[_Union[Citation, _Mapping]]] = ...) -> None: ...

class Thread(_message.Message):
    __slots__ = ("name", "metadata", "create_time", "update_time")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    metadata: _containers.ScalarMap[str, str]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("name", "role", "content", "tool_call", "run", "create_time")
    class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ROLE_UNSPECIFIED: _ClassVar[Message.Role]
        ROLE_USER: _ClassVar[Message.Role]
        ROLE_ASSISTANT: _ClassVar[Message.Role]
        ROLE_TOOL: _ClassVar[Message.Role]
    ROLE_UNSPECIFIED: Message.Role
    ROLE_USER: Message.Role
    ROLE_ASSISTANT: Message.Role
    ROLE_TOOL: Message.Role
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: Message.Role
    content: str
    tool_call: ToolCall
    run: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[Message.Role, str]] = ..., content: _Optional[str] = ..., tool_call: _Optional[_Union[ToolCall, _Mapping]] = ..., run: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("sequence", "create_time", "run_started", "text_delta", "model_call", "tool_call_started", "tool_call_finished", "requires_action", "run_finished")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_STARTED_FIELD_NUMBER: _ClassVar[int]
    TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALL_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_STARTED_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FINISHED_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_ACTION_FIELD_NUMBER: _ClassVar[int]
    RUN_FINISHED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    create_time: _timestamp_pb2.Timestamp
    run_started: RunStarted
    text_delta: TextDelta
    model_call: ModelCall
    tool_call_started: ToolCall
    tool_call_finished: ToolCall
    requires_action: RequiresAction
    run_finished: Run
    def __init__(self, sequence: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_started: _Optional[_Union[RunStarted, _Mapping]] = ..., text_delta: _Optional[_Union[TextDelta, _Mapping]] = ..., model_call: _Optional[_Union[ModelCall, _Mapping]] = ..., tool_call_started: _Optional[_Union[ToolCall, _Mapping]] = ..., tool_call_finished: _Optional[_Union[ToolCall, _Mapping]] = ..., requires_action: _Optional[_Union[RequiresAction, _Mapping]] = ..., run_finished: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class RunStarted(_message.Message):
    __slots__ = ("agent_revision", "model", "resumed")
    AGENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    agent_revision: str
    model: str
    resumed: bool
    def __init__(self, agent_revision: _Optional[str] = ..., model: _Optional[str] = ..., resumed: _Optional[bool] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ModelCall(_message.Message):
    __slots__ = ("model", "latency", "input_tokens", "output_tokens", "content", "tool_calls", "finish_reason", "route", "endpoint", "attempts")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    latency: _duration_pb2.Duration
    input_tokens: int
    output_tokens: int
    content: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    finish_reason: str
    route: str
    endpoint: str
    attempts: int
    def __init__(self, model: _Optional[str] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., content: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., finish_reason: _Optional[str] = ..., route: _Optional[str] = ..., endpoint: _Optional[str] = ..., attempts: _Optional[int] = ...) -> None: ...

class RequiresAction(_message.Message):
    __slots__ = ("tool_calls",)
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    def __init__(self, tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ...) -> None: ...

class ToolApproval(_message.Message):
    __slots__ = ("tool_call_id", "decision", "reason", "arguments")
    class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DECISION_UNSPECIFIED: _ClassVar[ToolApproval.Decision]
        DECISION_APPROVE: _ClassVar[ToolApproval.Decision]
        DECISION_REJECT: _ClassVar[ToolApproval.Decision]
    DECISION_UNSPECIFIED: ToolApproval.Decision
    DECISION_APPROVE: ToolApproval.Decision
    DECISION_REJECT: ToolApproval.Decision
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    decision: ToolApproval.Decision
    reason: str
    arguments: str
    def __init__(self, tool_call_id: _Optional[str] = ..., decision: _Optional[_Union[ToolApproval.Decision, str]] = ..., reason: _Optional[str] = ..., arguments: _Optional[str] = ...) -> None: ...

class HttpTool(_message.Message):
    __slots__ = ("name", "display_name", "description", "method", "url_template", "parameters", "auth_header_name", "auth_header_value", "timeout", "max_response_bytes", "create_time", "update_time")
    class Method(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        METHOD_UNSPECIFIED: _ClassVar[HttpTool.Method]
        METHOD_GET: _ClassVar[HttpTool.Method]
        METHOD_POST: _ClassVar[HttpTool.Method]
        METHOD_PUT: _ClassVar[HttpTool.Method]
        METHOD_PATCH: _ClassVar[HttpTool.Method]
        METHOD_DELETE: _ClassVar[HttpTool.Method]
    METHOD_UNSPECIFIED: HttpTool.Method
    METHOD_GET: HttpTool.Method
    METHOD_POST: HttpTool.Method
    METHOD_PUT: HttpTool.Method
    METHOD_PATCH: HttpTool.Method
    METHOD_DELETE: HttpTool.Method
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    AUTH_HEADER_NAME_FIELD_NUMBER: _ClassVar[int]
    AUTH_HEADER_VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_RESPONSE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    method: HttpTool.Method
    url_template: str
    parameters: _struct_pb2.Struct
    auth_header_name: str
    auth_header_value: str
    timeout: _duration_pb2.Duration
    max_response_bytes: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., method: _Optional[_Union[HttpTool.Method, str]] = ..., url_template: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., auth_header_name: _Optional[str] = ..., auth_header_value: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_response_bytes: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class NotificationChannel(_message.Message):
    __slots__ = ("name", "display_name", "email", "slack", "webhook", "sms", "create_time", "update_time")
    class Email(_message.Message):
        __slots__ = ("smtp_host", "smtp_port", "security", "username", "password", "from_address", "to_addresses")
        class Security(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            SECURITY_UNSPECIFIED: _ClassVar[NotificationChannel.Email.Security]
            SECURITY_STARTTLS: _ClassVar[NotificationChannel.Email.Security]
            SECURITY_TLS: _ClassVar[NotificationChannel.Email.Security]
            SECURITY_NONE: _ClassVar[NotificationChannel.Email.Security]
        SECURITY_UNSPECIFIED: NotificationChannel.Email.Security
        SECURITY_STARTTLS: NotificationChannel.Email.Security
        SECURITY_TLS: NotificationChannel.Email.Security
        SECURITY_NONE: NotificationChannel.Email.Security
        SMTP_HOST_FIELD_NUMBER: _ClassVar[int]
        SMTP_PORT_FIELD_NUMBER: _ClassVar[int]
        SECURITY_FIELD_NUMBER: _ClassVar[int]
        USERNAME_FIELD_NUMBER: _ClassVar[int]
        PASSWORD_FIELD_NUMBER: _ClassVar[int]
        FROM_ADDRESS_FIELD_NUMBER: _ClassVar[int]
        TO_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
        smtp_host: str
        smtp_port: int
        security: NotificationChannel.Email.Security
        username: str
        password: str
        from_address: str
        to_addresses: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, smtp_host: _Optional[str] = ..., smtp_port: _Optional[int] = ..., security: _Optional[_Union[NotificationChannel.Email.Security, str]] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., from_address: _Optional[str] = ..., to_addresses: _Optional[_Iterable[str]] = ...) -> None: ...
    class Slack(_message.Message):
        __slots__ = ("webhook_url",)
        WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
        webhook_url: str
        def __init__(self, webhook_url: _Optional[str] = ...) -> None: ...
    class Webhook(_message.Message):
        __slots__ = ("url", "secret")
        URL_FIELD_NUMBER: _ClassVar[int]
        SECRET_FIELD_NUMBER: _ClassVar[int]
        url: str
        secret: str
        def __init__(self, url: _Optional[str] = ..., secret: _Optional[str] = ...) -> None: ...
    class Sms(_message.Message):
        __slots__ = ("provider", "account_sid", "auth_token", "from_number", "to_numbers")
        class Provider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            PROVIDER_UNSPECIFIED: _ClassVar[NotificationChannel.Sms.Provider]
            PROVIDER_TWILIO: _ClassVar[NotificationChannel.Sms.Provider]
        PROVIDER_UNSPECIFIED: NotificationChannel.Sms.Provider
        PROVIDER_TWILIO: NotificationChannel.Sms.Provider
        PROVIDER_FIELD_NUMBER: _ClassVar[int]
        ACCOUNT_SID_FIELD_NUMBER: _ClassVar[int]
        AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
        FROM_NUMBER_FIELD_NUMBER: _ClassVar[int]
        TO_NUMBERS_FIELD_NUMBER: _ClassVar[int]
        provider: NotificationChannel.Sms.Provider
        account_sid: str
        auth_token: str
        from_number: str
        to_numbers: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, provider: _Optional[_Union[NotificationChannel.Sms.Provider, str]] = ..., account_sid: _Optional[str] = ..., auth_token: _Optional[str] = ..., from_number: _Optional[str] = ..., to_numbers: _Optional[_Iterable[str]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    SLACK_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    SMS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    email: NotificationChannel.Email
    slack: NotificationChannel.Slack
    webhook: NotificationChannel.Webhook
    sms: NotificationChannel.Sms
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., email: _Optional[_Union[NotificationChannel.Email, _Mapping]] = ..., slack: _Optional[_Union[NotificationChannel.Slack, _Mapping]] = ..., webhook: _Optional[_Union[NotificationChannel.Webhook, _Mapping]] = ..., sms: _Optional[_Union[NotificationChannel.Sms, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class NotificationDelivery(_message.Message):
    __slots__ = ("name", "subject", "message", "state", "attempts", "last_error", "create_time", "next_attempt_time", "end_time")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[NotificationDelivery.State]
        STATE_PENDING: _ClassVar[NotificationDelivery.State]
        STATE_SUCCEEDED: _ClassVar[NotificationDelivery.State]
        STATE_FAILED: _ClassVar[NotificationDelivery.State]
    STATE_UNSPECIFIED: NotificationDelivery.State
    STATE_PENDING: NotificationDelivery.State
    STATE_SUCCEEDED: NotificationDelivery.State
    STATE_FAILED: NotificationDelivery.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    subject: str
    message: str
    state: NotificationDelivery.State
    attempts: int
    last_error: str
    create_time: _timestamp_pb2.Timestamp
    next_attempt_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., subject: _Optional[str] = ..., message: _Optional[str] = ..., state: _Optional[_Union[NotificationDelivery.State, str]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
