"""Agents, their sessions, turns, the action graph, the session event log, and the jobs of
long-running tool calls."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from apps.llm.models import ModelEndpoint, Sensitivity, Tier
from apps.tenants.models import TenantOwned
from apps.tools.models import Tool


class Environment(models.TextChoices):
    PROD = "prod", "Production"
    STAGE = "stage", "Staging"
    DEV = "dev", "Development"


class RiskTier(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class Agent(TenantOwned):
    """An agent definition: prompt, models it may use, tools it may call, limits."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    system_prompt = models.TextField(blank=True)
    model_tier = models.CharField(max_length=8, choices=Tier.choices, default=Tier.SMALL)
    allowed_endpoints = models.ManyToManyField(
        ModelEndpoint,
        blank=True,
        related_name="agents",
        help_text="Empty: any active endpoint of the tenant that the routing rules allow.",
    )
    allowed_tools = models.JSONField(
        default=list, blank=True, help_text="Names of the tools this agent may call."
    )
    max_steps = models.PositiveIntegerField(default=8)
    data_sensitivity = models.CharField(
        max_length=16, choices=Sensitivity.choices, default=Sensitivity.INTERNAL
    )
    # Hard budgets (ARCHITECTURE.md: 8K in + 2K out per turn, 40K per session).
    max_input_tokens_per_turn = models.PositiveIntegerField(default=8000)
    max_output_tokens_per_turn = models.PositiveIntegerField(default=2000)
    max_tokens_per_session = models.PositiveIntegerField(default=40000)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="uniq_agent_tenant_slug")
        ]

    def __str__(self) -> str:
        return self.name


class SessionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    CLOSED = "closed", "Closed"
    CANCELLED = "cancelled", "Cancelled"


class AgentSession(TenantOwned):
    """One conversation of a user with an agent. Its turns run strictly one at a time, in order."""

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="sessions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="agent_sessions",
    )
    title = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=16, choices=SessionStatus.choices, default=SessionStatus.ACTIVE
    )
    environment = models.CharField(
        max_length=8, choices=Environment.choices, default=Environment.DEV
    )
    risk_tier = models.CharField(max_length=8, choices=RiskTier.choices, default=RiskTier.LOW)
    data_sensitivity = models.CharField(max_length=16, choices=Sensitivity.choices)
    metadata = models.JSONField(default=dict, blank=True)
    # Short-term state (the Durable Object's storage); dropped after its TTL.
    state = models.JSONField(default=dict, blank=True)
    state_expires_at = models.DateTimeField(null=True, blank=True)
    next_seq = models.PositiveIntegerField(default=1, editable=False)
    tokens_used = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "session"

    def __str__(self) -> str:
        return self.title or f"session {str(self.id)[:8]}"


class TurnStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_TURN_STATUSES = frozenset({TurnStatus.COMPLETED, TurnStatus.FAILED, TurnStatus.CANCELLED})


class Turn(TenantOwned):
    """One user message and everything the agent did about it (a state machine).

    queued → running → (waiting →) completed | failed | cancelled
    """

    session = models.ForeignKey(AgentSession, on_delete=models.CASCADE, related_name="turns")
    seq = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=TurnStatus.choices, default=TurnStatus.QUEUED)
    user_message = models.TextField()
    final_answer = models.TextField(blank=True)
    outcome = models.CharField(
        max_length=32,
        blank=True,
        help_text="completed, max_steps_exceeded, malformed_output, provider_error, …",
    )
    detail = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0, help_text="Deliveries to a worker.")
    cancel_requested = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    request_id = models.CharField(max_length=128, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Budget obligations the turn runs under from its first call: admitted while the queue
    # was backed up (backpressure), it runs on the small tier with fewer tools.
    degraded = models.JSONField(default=list, blank=True)
    # Admitted with `allow_model_upgrade` for a prompt too long for the first choice: only
    # endpoints with at least this context window may answer it (0: any).
    min_context_tokens = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["session", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="uniq_turn_session_seq")
        ]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            # The backpressure measure reads the queued turns only.
            models.Index(
                fields=["created_at"],
                name="turn_queued_created",
                condition=models.Q(status="queued"),
            ),
        ]

    def __str__(self) -> str:
        return f"turn {self.seq} of {self.session_id}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_TURN_STATUSES


class ActionNode(TenantOwned):
    """A node of the turn's action graph: a model call, a tool call or an observation.

    `node_id` is the loop's deterministic id (and idempotency key); `parents`
    holds the node ids this one depends on, making the graph a DAG. `outputs` is
    what end users may see; `scratchpad` (the model's full reasoning) is for
    admins only.
    """

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="nodes")
    node_id = models.CharField(max_length=200)
    position = models.PositiveIntegerField(help_text="Order in which the node was first saved.")
    kind = models.CharField(max_length=16)
    status = models.CharField(max_length=24)
    step_index = models.PositiveIntegerField()
    call_index = models.PositiveIntegerField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    parents = models.JSONField(default=list)
    inputs = models.JSONField(default=dict)
    outputs = models.JSONField(default=dict)
    scratchpad = models.JSONField(default=dict)
    latency_ms = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    # The OpenTelemetry trace of the run that last wrote the node (32 hex digits; "" when
    # written outside any trace): its correlation id with the spans and events.
    trace_id = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        ordering = ["turn", "position"]
        constraints = [
            models.UniqueConstraint(fields=["turn", "node_id"], name="uniq_node_turn_node_id")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.node_id} ({self.status})"


class EventLogAppendOnly(RuntimeError):
    """A stored session event was about to be changed or deleted: the log is append-only."""


class SessionEvent(TenantOwned):
    """A durable event of a session, in order. Its `id` is the SSE event id.

    Model tokens are streamed live but not stored here: the final answer in
    `turn.completed` carries the same text, so a reconnecting client misses nothing.

    Append-only and hash-chained per session (apps/agents/audit.py): the database seals each
    row as its transaction commits (`chain_seq`, `prev_hash`, `hash`; migration 0005), and
    refuses to UPDATE a sealed row. They are unset (None, "") only inside the writing transaction.
    """

    id = models.BigAutoField(primary_key=True)  # type: ignore[assignment]  # ordered, for SSE
    session = models.ForeignKey(AgentSession, on_delete=models.CASCADE, related_name="events")
    turn = models.ForeignKey(
        Turn, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    type = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    # The OpenTelemetry trace the event was made in (32 hex digits, "" outside any trace).
    trace_id = models.CharField(max_length=32, blank=True, default="")
    chain_seq = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    prev_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    hash = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        ordering = ["id"]
        # A session's events, read by every selector with their tenant (tenant isolation):
        # with the tenant in the index, the planner reads the session's entries alone, not
        # also every event of the tenant (migration 0008).
        indexes = [models.Index(fields=["session", "tenant", "id"], name="event_session_tenant_id")]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "chain_seq"], name="uniq_event_session_chain_seq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise EventLogAppendOnly(f"event {self.id} is stored; events are never changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise EventLogAppendOnly(f"event {self.id} is stored; events are never deleted")


class SessionChainHead(models.Model):
    """The last link of a session's event chain: its seq and hash, kept by the database.

    The sealing trigger locks this row to number and chain a session's events one writer
    at a time; `audit verify` compares the chain's last event with it, which is how a
    deleted tail shows. It goes with its session (the whole chain goes then: archive first).
    """

    session = models.OneToOneField(
        AgentSession, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    last_seq = models.PositiveBigIntegerField()
    last_hash = models.CharField(max_length=64)

    class Meta:
        db_table = "agents_sessionchainhead"

    def __str__(self) -> str:
        return f"chain head {self.last_seq} of {self.session_id}"


class ToolJobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class ToolJob(TenantOwned):
    """A long-running tool call, run as its own Celery job while its turn waits.

    queued → running → completed | failed. The job writes the call's action-graph node
    (`turn`, `node_id`) when it finishes and puts the turn back in the queue; the resumed
    loop replays the finished node instead of calling the tool again (apps/agents/jobs.py).

    It lived in apps.tools until the layers were made one-way; its table kept its name
    (migration agents 0003), so no data moved and no deploy had to wait for a copy.
    """

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="+")
    node_id = models.CharField(max_length=200)
    tool = models.ForeignKey(Tool, null=True, blank=True, on_delete=models.SET_NULL)
    tool_name = models.CharField(max_length=64)
    arguments = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=ToolJobStatus.choices, default=ToolJobStatus.QUEUED
    )
    attempts = models.PositiveIntegerField(default=0)
    progress = models.FloatField(null=True, blank=True)
    progress_total = models.FloatField(null=True, blank=True)
    progress_message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "tools_tooljob"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["turn", "node_id"], name="uniq_tool_job_turn_node")
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} job ({self.status})"


class SessionSummary(TenantOwned):
    """A summary of a session's turns `from_seq`..`through_seq`, made by the small tier when a
    prompt neared its model's window or its turn's input budget (context compression,
    apps/agents/runtime/compression.py). Later prompts show the newest one instead of the
    turns it covers; it is never recomputed. Tokens as the made-by turn's counter counted.
    """

    session = models.ForeignKey(AgentSession, on_delete=models.CASCADE, related_name="summaries")
    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="+")
    from_seq = models.PositiveIntegerField()
    through_seq = models.PositiveIntegerField()
    text = models.TextField()
    tokens_before = models.PositiveIntegerField()
    tokens_after = models.PositiveIntegerField()
    counter = models.CharField(max_length=32, blank=True)
    turn_ids = models.JSONField(default=list)

    class Meta:
        verbose_name_plural = "session summaries"
        ordering = ["session", "-through_seq"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "through_seq"], name="uniq_summary_session_through"
            ),
            models.CheckConstraint(
                condition=models.Q(from_seq__lte=models.F("through_seq")),
                name="summary_from_before_through",
            ),
        ]

    def __str__(self) -> str:
        return f"summary of turns {self.from_seq}-{self.through_seq}"
