"""Type-checked (`mypy --strict`), never run: calls every operation of openapi.json through the
client openapi-python-client generates from it (package `wirehook_client`), and reads typed
fields of every success response model. A spec change that drops an operation or a model,
renames or retypes a field, or makes a parameter or body unusable fails the check.
scripts/client-check.sh generates the client and runs mypy on this file; it also fails when a
generated operation module is not called here (so a new operation must be added below).

Reads are written `x: T = model.field`, so that a missing field, or one whose type is not
assignable to T, is an error. Fields whose shape is known are read at that shape (an event type
list as list[EventType]), so a spec that loses their type fails too.
"""

import datetime
from typing import Any, TypeVar

from wirehook_client import AuthenticatedClient, Client
from wirehook_client.api.configs import (
    configs_create,
    configs_delete,
    configs_get,
    configs_list,
    configs_recover,
    configs_rotate_secret,
    configs_test,
    configs_update,
)
from wirehook_client.api.events import (
    events_get,
    events_list,
    events_publish,
    events_retry,
    events_skip,
)
from wirehook_client.api.inbound import inbound_elevenlabs, inbound_signalwire
from wirehook_client.api.operations import ops_health, ops_metrics, ops_ready
from wirehook_client.models import (
    ConfigChangedResponse,
    ConfigCreatedResponse,
    ConfigIn,
    ConfigInHeaders,
    ConfigInMetadata,
    ConfigListResponse,
    ConfigPatch,
    ConfigPatchHeaders,
    ConfigPatchMetadata,
    ConfigResponse,
    ConfigStatus,
    DeliveryAttempt,
    Direction,
    ErrorBody,
    EventDetailsResponse,
    EventListResponse,
    EventStatus,
    EventType,
    Filters,
    FiltersIn,
    HealthStatus,
    InboundElevenlabsBody,
    InboundResponse,
    InboundSignalwireDataBody,
    InboundSignalwireJsonBody,
    MessageResponse,
    PublishedEvent,
    PublishEvent,
    PublishEventPayload,
    RecoverIn,
    RecoverResponse,
    ResponseData,
    RetryConfig,
    RetryConfigIn,
    RetryResponse,
    SkipResponse,
    RotateIn,
    RotateResponse,
    Source,
    TestDetails,
    TestIn,
    TestInTestPayload,
    TestResponse,
    UserStatus,
    WebhookConfig,
    WebhookConfigSummary,
    WebhookConfigWithSecret,
    WebhookEvent,
)
from wirehook_client.types import UNSET, Response, Unset

T = TypeVar("T")


class ApiError(Exception):
    pass


def ok(response: Response[T | ErrorBody]) -> T:
    """The success body of a response whose every error is an ErrorBody (checked by the type)."""
    parsed = response.parsed
    if isinstance(parsed, ErrorBody):
        code: str = parsed.error.code
        message: str = parsed.error.message
        success: bool = parsed.success
        raise ApiError(f"{response.status_code}: {code}: {message} (success={success})")
    if parsed is None:
        raise ApiError(f"undocumented status {response.status_code}")
    return parsed


# --- one reader per response model -----------------------------------------------------------


def read_retry_config(r: RetryConfig) -> None:
    max_attempts: int = r.max_attempts
    initial_delay: int = r.initial_delay
    max_delay: int = r.max_delay
    backoff_factor: float = r.backoff_factor
    print(max_attempts, initial_delay, max_delay, backoff_factor)


def read_filters(f: Filters) -> None:
    campaigns: list[str] | Unset = f.campaigns
    outcomes: list[str] | Unset = f.outcomes
    agents: list[str] | Unset = f.agents
    print(campaigns, outcomes, agents)


def read_config(c: WebhookConfig | WebhookConfigWithSecret) -> None:
    id_: int = c.id
    name: str = c.name
    url: str = c.url
    event_types: list[EventType] = c.event_types
    status: ConfigStatus = c.status
    headers: dict[str, str] = c.headers.additional_properties
    header: str = c.headers["x-custom"]
    read_retry_config(c.retry_config)
    read_filters(c.filters)
    # `metadata` is untyped (Any) in the spec until it is documented as an object; this read
    # already matches the model the generator makes of an object.
    metadata: dict[str, Any] = c.metadata.additional_properties
    disabled_reason: str | Unset = c.disabled_reason
    disabled_at: datetime.datetime | Unset = c.disabled_at
    failing_since: datetime.datetime | Unset = c.failing_since
    failed_attempts: int = c.failed_attempts
    previous_secret_expires_at: datetime.datetime | Unset = c.previous_secret_expires_at
    created_at: datetime.datetime = c.created_at
    updated_at: datetime.datetime = c.updated_at
    print(id_, name, url, event_types, status, headers, header, metadata, disabled_reason)
    print(disabled_at, failing_since, failed_attempts, previous_secret_expires_at)
    print(created_at, updated_at)


def read_config_with_secret(c: WebhookConfigWithSecret) -> None:
    secret: str = c.secret
    print(secret)
    read_config(c)


def read_response_data(r: ResponseData) -> None:
    status_code: int | Unset = r.status_code
    body: str = r.body
    headers: dict[str, str] = r.headers.additional_properties
    timing: int = r.timing
    truncated: bool = r.truncated
    error: str | Unset = r.error
    print(status_code, body, headers, timing, truncated, error)


def read_event(e: WebhookEvent) -> None:
    id_: int = e.id
    message_id: str = e.message_id
    direction: Direction = e.direction
    source: Source = e.source
    # A str, not EventType: ignored inbound events keep the provider's own type name.
    event_type: str = e.event_type
    status: EventStatus = e.status
    payload: Any = e.payload
    normalized_payload: Any = e.normalized_payload
    attempts: int = e.attempts
    webhook_config_id: int | Unset = e.webhook_config_id
    if not isinstance(e.response_data, Unset):
        read_response_data(e.response_data)
    parent_event_id: int | Unset = e.parent_event_id
    next_attempt_at: datetime.datetime | Unset = e.next_attempt_at
    last_error: str | Unset = e.last_error
    client_ip: str | Unset = e.client_ip
    if not isinstance(e.ordering, Unset):
        ordering_key: str = e.ordering.key
        sequence: int = e.ordering.sequence
        previous_id: str | Unset = e.ordering.previous_id
        waiting: bool = e.ordering.waiting
        print(ordering_key, sequence, previous_id, waiting)
    created_at: datetime.datetime = e.created_at
    updated_at: datetime.datetime = e.updated_at
    print(id_, message_id, direction, source, event_type, status, payload, normalized_payload)
    print(attempts, webhook_config_id, parent_event_id, next_attempt_at, last_error)
    print(client_ip, created_at, updated_at)


def read_attempt(a: DeliveryAttempt) -> None:
    attempt: int = a.attempt
    status_code: int | Unset = a.status_code
    duration_ms: int = a.duration_ms
    error_kind: str | Unset = a.error_kind
    error: str | Unset = a.error
    # The header maps are untyped (Any) in the spec until they are documented as string maps;
    # these reads already match the models the generator makes of those.
    request_headers: dict[str, str] = a.request_headers.additional_properties
    if not isinstance(a.response_headers, Unset):
        response_headers: dict[str, str] = a.response_headers.additional_properties
        print(response_headers)
    response_body: str | Unset = a.response_body
    truncated: bool = a.truncated
    created_at: datetime.datetime = a.created_at
    print(attempt, status_code, duration_ms, error_kind, error, request_headers)
    print(response_body, truncated, created_at)


def read_inbound(r: InboundResponse) -> None:
    success: bool = r.success
    message: str = r.message
    event_id: int = r.event_id
    status: EventStatus = r.status
    duplicate: bool = r.duplicate
    deliveries: int = r.deliveries
    print(success, message, event_id, status, duplicate, deliveries)


# --- every operation -------------------------------------------------------------------------


def check_configs(client: AuthenticatedClient) -> int:
    # configs.list
    listed: ConfigListResponse = ok(configs_list.sync_detailed(client=client))
    listed_success: bool = listed.success
    webhooks: list[WebhookConfig] = listed.webhooks
    for c in webhooks:
        read_config(c)
    print(listed_success)

    # configs.create: every field of ConfigIn, typed
    headers = ConfigInHeaders()
    headers["x-custom"] = "1"
    metadata = ConfigInMetadata()
    metadata["team"] = "voice"
    body = ConfigIn(
        name="client check",
        url="https://example.test/hook",
        event_types=[EventType.CALL_COMPLETED, EventType.AGENT_ERROR],
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        status=UserStatus.ACTIVE,
        headers=headers,
        retry_config=RetryConfigIn(max_attempts=5, initial_delay=30, max_delay=3600, backoff_factor=2.0),
        filters=FiltersIn(campaigns=["c-1"], outcomes=["completed"], agents=["a-1"]),
        metadata=metadata,
    )
    created_response: Response[ConfigCreatedResponse | ErrorBody] = configs_create.sync_detailed(
        client=client, body=body
    )
    created: ConfigCreatedResponse = ok(created_response)
    created_success: bool = created.success
    created_message: str = created.message
    read_config_with_secret(created.webhook)
    id_: int = created.webhook.id
    print(created_success, created_message)

    # configs.get
    got: ConfigResponse = ok(configs_get.sync_detailed(id_, client=client))
    got_success: bool = got.success
    read_config(got.webhook)
    print(got_success)

    # configs.update: a partial body
    patch_headers = ConfigPatchHeaders()
    patch_headers["x-other"] = "2"
    patch = ConfigPatch(
        name="renamed",
        url="https://example.test/other",
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        event_types=[EventType.CALL_CREATED],
        status=UserStatus.INACTIVE,
        headers=patch_headers,
        retry_config=RetryConfigIn(max_attempts=3),
        filters=FiltersIn(),
        metadata=ConfigPatchMetadata(),
    )
    updated: ConfigChangedResponse = ok(configs_update.sync_detailed(id_, client=client, body=patch))
    updated_success: bool = updated.success
    updated_message: str = updated.message
    read_config(updated.webhook)
    print(updated_success, updated_message)
    ok(configs_update.sync_detailed(id_, client=client, body=ConfigPatch()))

    # configs.test
    test_payload = TestInTestPayload()
    test_payload["callId"] = "CA1"
    tested: TestResponse = ok(
        configs_test.sync_detailed(
            id_, client=client, body=TestIn(event_type=EventType.CALL_COMPLETED, test_payload=test_payload)
        )
    )
    tested_success: bool = tested.success
    tested_message: str = tested.message
    details: TestDetails = tested.details
    delivered: bool = details.delivered
    status_code: int | Unset = details.status_code
    response_body: str = details.response_body
    response_time: int = details.response_time
    test_error: str | Unset = details.error
    event_id: int = details.event_id
    message_id: str = details.message_id
    print(tested_success, tested_message, delivered, status_code, response_body, response_time)
    print(test_error, event_id, message_id)

    # configs.rotateSecret
    rotated: RotateResponse = ok(
        configs_rotate_secret.sync_detailed(
            id_, client=client, body=RotateIn(secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", overlap_seconds=3600)
        )
    )
    rotated_success: bool = rotated.success
    rotated_message: str = rotated.message
    new_secret: str = rotated.webhook.secret
    read_config_with_secret(rotated.webhook)
    print(rotated_success, rotated_message, new_secret)
    ok(configs_rotate_secret.sync_detailed(id_, client=client, body=RotateIn()))

    # configs.recover
    since = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    recovered: RecoverResponse = ok(
        configs_recover.sync_detailed(
            id_, client=client, body=RecoverIn(since=since, until=since + datetime.timedelta(days=1))
        )
    )
    recovered_success: bool = recovered.success
    recovered_message: str = recovered.message
    count: int = recovered.count
    print(recovered_success, recovered_message, count)

    # configs.delete
    deleted: MessageResponse = ok(configs_delete.sync_detailed(id_, client=client))
    deleted_success: bool = deleted.success
    deleted_message: str = deleted.message
    print(deleted_success, deleted_message)
    return id_


def check_events(client: AuthenticatedClient, config_id: int) -> None:
    # events.publish
    payload = PublishEventPayload()
    payload["campaignId"] = "c-1"
    payload["outcome"] = "completed"
    published: PublishedEvent = ok(
        events_publish.sync_detailed(
            client=client,
            body=PublishEvent(event_type=EventType.CALL_COMPLETED, payload=payload, idempotency_key="client-check-1"),
        )
    )
    published_success: bool = published.success
    published_message: str = published.message
    duplicate: bool = published.duplicate
    deliveries: int = published.deliveries
    read_event(published.event)
    event_id: int = published.event.id
    print(published_success, published_message, duplicate, deliveries)

    # events.list: every query parameter
    listed: EventListResponse = ok(
        events_list.sync_detailed(
            client=client,
            page=1,
            limit=20,
            direction=Direction.OUTBOUND,
            source=Source("11wire"),
            event_type="call.completed",
            status=EventStatus.FAILED,
            from_date="2026-01-01",
            to_date="2026-01-31T23:59:59Z",
            webhook_config_id=config_id,
        )
    )
    listed_success: bool = listed.success
    count: int = listed.count
    total: int = listed.total
    page: int = listed.page
    pages: int = listed.pages
    events: list[WebhookEvent] = listed.events
    for e in events:
        read_event(e)
    print(listed_success, count, total, page, pages)
    ok(events_list.sync_detailed(client=client))

    # events.get
    got: EventDetailsResponse = ok(events_get.sync_detailed(event_id, client=client))
    got_success: bool = got.success
    read_event(got.event)
    summary: WebhookConfigSummary | Unset = got.webhook_config
    if not isinstance(summary, Unset):
        summary_id: int = summary.id
        summary_name: str = summary.name
        summary_url: str = summary.url
        print(summary_id, summary_name, summary_url)
    attempts: list[DeliveryAttempt] = got.delivery_attempts
    for a in attempts:
        read_attempt(a)
    print(got_success)

    # events.retry
    retried: RetryResponse = ok(events_retry.sync_detailed(event_id, client=client))
    retried_success: bool = retried.success
    retried_message: str = retried.message
    read_event(retried.event)
    print(retried_success, retried_message)

    # events.skip
    skipped: SkipResponse = ok(events_skip.sync_detailed(event_id, client=client))
    skipped_success: bool = skipped.success
    skipped_message: str = skipped.message
    read_event(skipped.event)
    print(skipped_success, skipped_message)


def check_inbound(client: Client) -> None:
    # inbound.signalwire: a JSON call event...
    call_event = InboundSignalwireJsonBody.from_dict({"event_type": "call.completed", "call_id": "CA1"})
    call_event["state"] = "completed"
    signalwire = inbound_signalwire.sync_detailed(client=client, body=call_event, x_signal_wire_signature="0123abcd")
    read_inbound(ok(signalwire))
    # ... and a form-encoded cXML callback.
    callback = InboundSignalwireDataBody.from_dict({"CallSid": "CA1", "CallStatus": "completed"})
    form: InboundResponse = ok(inbound_signalwire.sync_detailed(client=client, body=callback))
    form_duplicate: bool = form.duplicate
    print(form_duplicate)

    # inbound.elevenlabs
    transcription = InboundElevenlabsBody.from_dict({"type": "post_call_transcription", "data": {}})
    elevenlabs = inbound_elevenlabs.sync_detailed(client=client, body=transcription, eleven_labs_signature="t=1700000000,v0=0123abcd")
    read_inbound(ok(elevenlabs))


def check_ops(client: Client) -> None:
    # ops.health
    health: HealthStatus | None = ops_health.sync(client=client)
    if health is not None:
        health_status: str = health.status
        print(health_status)
    # ops.ready: 503 carries a HealthStatus too
    ready: Response[HealthStatus] = ops_ready.sync_detailed(client=client)
    if ready.parsed is not None:
        ready_status: str = ready.parsed.status
        print(ready.status_code, ready_status)
    # ops.metrics: Prometheus text
    metrics: str | None = ops_metrics.sync(client=client)
    print(metrics)


def main(base_url: str, token: str) -> None:
    with AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True) as client:
        config_id = check_configs(client)
        check_events(client, config_id)
    with Client(base_url=base_url, raise_on_unexpected_status=True) as anonymous:
        check_inbound(anonymous)
        check_ops(anonymous)


if __name__ == "__main__":
    main("http://127.0.0.1:3000", "token")
