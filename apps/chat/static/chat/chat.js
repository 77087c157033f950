// Warden chat: one session's stream over /ws/sessions/<id>/ (plain ES module, no build step).
//
// Every durable event has an id: the page remembers the highest it has shown, reconnects with
// ?last_event_id=<it> after a drop (with backoff) and ignores an id it has seen, so a replayed
// backlog shows nothing twice. Model tokens have no id; the final answer replaces them.
// Everything a model or tool wrote is inserted as text, never as HTML.

const cfg = JSON.parse(document.getElementById("chat-config").textContent);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const stream = document.getElementById("stream");
const conn = document.getElementById("conn");
const banner = document.getElementById("banner");
const composer = document.getElementById("composer");
const textarea = document.getElementById("message");
const sendButton = document.getElementById("send");
const DRAFT_KEY = `warden.chat.draft.${cfg.sessionId}`;

const seen = new Set();
const handled = [];
let tokens = 0;
let lastId = 0;
const turns = new Map();
let ws = null;
let attempt = 0;
let stopped = false;
let awaitingAck = null;

// What to do next, per error code (REST, websocket `error` events and failed turns).
const ADVICE = {
  budget_exceeded: "The budget has no room left for this. Start a new session, or ask a tenant admin to raise the budget; daily budgets reset at midnight UTC.",
  budget_unavailable: "Budgets can't be checked right now. Try again in a minute.",
  rate_limited: "Too many requests right now. Wait a moment, then send again.",
  throttled: "Too many requests right now. Wait a moment, then send again.",
  too_many_queued_turns: "Several of your messages are already waiting. Let them finish first.",
  turn_backlog_full: "The platform is busy. Try again in a minute.",
  backpressure: "The platform is busy. Try again in a minute.",
  session_not_active: "This session is closed. Start a new session from the list.",
  agent_inactive: "This agent is disabled. Start a session with another agent.",
  permission_denied: "Your role doesn't allow this. Ask a tenant admin for access.",
  endpoint_unpriced: "No priced model can serve this agent. Ask an operator to set a price.",
  rejected: "A person rejected a step; the agent was told why.",
};
const advice = (code) => ADVICE[code] || "Try again, rephrase your request, or start a new session.";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}
const json = (value) => (typeof value === "string" ? value : JSON.stringify(value, null, 2));

function showBanner(message) {
  banner.textContent = message;
  banner.hidden = !message;
}

function setConn(state, text) {
  conn.dataset.state = state;
  conn.textContent = text;
  if (sendButton) sendButton.disabled = state !== "open";
}

// --------------------------------------------------------------------------- turns and steps

const STATUS_TEXT = {
  queued: "queued", running: "running", waiting: "waiting for approval",
  completed: "done", failed: "failed", cancelled: "cancelled",
};

function turnFor(turnId) {
  let turn = turns.get(turnId);
  if (turn) return turn;
  const badge = el("span", { class: "badge", "data-status": "queued", text: "queued" });
  const user = el("p", { class: "user" });
  const steps = el("div", { class: "steps" });
  const live = el("p", { class: "live", "aria-hidden": "true" });
  const answer = el("div", { class: "answer" });
  const problem = el("div", { class: "problem", role: "alert" });
  const root = el(
    "li", { class: "turn", "data-turn": turnId },
    el("div", {}, el("span", { text: "You: " }), badge), user, steps, live, answer, problem,
  );
  stream.append(root);
  turn = { root, badge, user, steps, live, answer, problem, stepCards: new Map(), tools: new Map(), current: null };
  turns.set(turnId, turn);
  return turn;
}

function setStatus(turn, status) {
  turn.badge.dataset.status = status;
  turn.badge.textContent = STATUS_TEXT[status] || status;
  turn.root.dataset.status = status;
}

function stepFor(turn, index) {
  let card = turn.stepCards.get(index);
  if (!card) {
    const summary = el("summary", {}, el("strong", { text: `Step ${index + 1}` }));
    const facts = el("dl");
    const body = el("div", { class: "body" }, facts);
    const details = el("details", { class: "step", "data-step": String(index) }, summary, body);
    turn.steps.append(details);
    card = { details, summary, body, facts, label: el("span"), meta: el("span", { class: "hint" }) };
    summary.append(card.label, card.meta);
    turn.stepCards.set(index, card);
  }
  turn.current = card;
  return card;
}

function fact(card, name, value, pre = false) {
  let dd = card.facts.querySelector(`dd[data-fact="${name}"]`);
  if (!dd) {
    card.facts.append(el("dt", { text: name }));
    dd = el("dd", { "data-fact": name });
    card.facts.append(dd);
  }
  dd.replaceChildren(pre ? el("pre", { text: json(value) }) : document.createTextNode(String(value)));
}

function toolFor(turn, nodeId, tool) {
  let box = turn.tools.get(nodeId);
  if (box) return box;
  const card = turn.current || stepFor(turn, turn.stepCards.size);
  const facts = el("dl");
  const root = el("div", { class: "tool", "data-node": nodeId }, el("strong", { text: `Tool: ${tool}` }), facts);
  card.body.append(root);
  card.label.textContent = ` · ${tool}`;
  box = { root, facts, card };
  turn.tools.set(nodeId, box);
  return box;
}

function toolFact(box, name, value, pre = false) {
  fact({ facts: box.facts }, name, value, pre);
}

// --------------------------------------------------------------------------- approvals

async function api(path, options = {}) {
  const response = await fetch(path, {
    credentials: "same-origin",
    ...options,
    headers: {
      "Content-Type": "application/json",
      "X-CSRFToken": csrf,
      "X-Warden-Tenant": cfg.tenant,
      ...(options.headers || {}),
    },
  });
  let body = {};
  try { body = await response.json(); } catch { /* not JSON */ }
  if (response.status === 401 || body.code === "not_authenticated") signInAgain();
  return { response, body };
}

function approvalBox(turnId, data) {
  const turn = turnFor(turnId);
  const box = toolFor(turn, data.node_id, data.tool);
  toolFact(box, "Arguments", data.arguments || {}, true);
  toolFact(box, "Policy", `requires approval: ${(data.reasons || []).join("; ") || data.reason || ""}`);
  if (box.approval) return;
  const note = el("p", { text: "Waiting for a person to approve this call." });
  box.approval = el("div", { class: "approval", role: "group", "aria-label": `Approval for ${data.tool}` }, note);
  box.approval.note = note;
  box.root.append(box.approval);
  box.card.details.open = true;
  if (cfg.canDecide) loadApprovalButtons(turnId, data, box);
}

async function loadApprovalButtons(turnId, data, box) {
  let pending = data.approval_id ? { id: data.approval_id } : null;
  if (!pending) {
    const { response, body } = await api(`/api/v1/approvals?turn=${turnId}&status=pending`, { method: "GET" });
    if (!response.ok) return;
    pending = (body.results || []).find((a) => a.call_key === data.node_id);
  }
  if (!pending || box.decided) return;
  const detail = await api(`/api/v1/approvals/${pending.id}`, { method: "GET" });
  if (!detail.response.ok || detail.body.status !== "pending" || box.decided) return;
  const own = detail.body.requested_by === cfg.username && !cfg.selfApprove;
  const inputId = `rationale-${pending.id}`;
  const rationale = el("input", { id: inputId, name: "rationale", maxlength: "2000", placeholder: "Why? (required to reject)" });
  const approve = el("button", { type: "button", text: "Approve" });
  const reject = el("button", { type: "button", class: "danger", text: "Reject" });
  const status = el("p", { role: "status" });
  const decide = async (verb) => {
    approve.disabled = reject.disabled = true;
    const { response: r, body: b } = await api(`/api/v1/approvals/${pending.id}/${verb}`, {
      method: "POST", body: JSON.stringify({ rationale: rationale.value }),
    });
    if (!r.ok) {
      status.textContent = `${b.message || "The decision failed."} ${b.code === "rationale_required" ? "Write why you reject it." : ""}`;
      approve.disabled = reject.disabled = false;
    }
  };
  approve.addEventListener("click", () => decide("approve"));
  reject.addEventListener("click", () => decide("reject"));
  box.approval.actions = el("div", { class: "actions" },
    el("label", { for: inputId, text: "Rationale" }), rationale, own ? null : approve, reject);
  box.approval.append(box.approval.actions, status);
  if (own) status.textContent = "You asked for this turn, so another approver must approve it; you may reject it.";
}

function approvalDecided(turnId, data) {
  const turn = turnFor(turnId);
  const box = toolFor(turn, data.node_id, data.tool);
  box.decided = true;
  if (!box.approval) {
    box.approval = el("div", { class: "approval" });
    box.approval.note = el("p");
    box.approval.append(box.approval.note);
    box.root.append(box.approval);
  }
  box.approval.actions?.remove();
  const who = data.approver ? ` by ${data.approver}` : "";
  const why = data.rationale ? `: ${data.rationale}` : "";
  box.approval.note.textContent = `${data.status === "approved" ? "Approved" : "Rejected"}${who} (${data.via || "api"})${why}`;
  box.approval.dataset.decision = data.status;
}

// --------------------------------------------------------------------------- events

function handle(msg) {
  if (msg.id !== null && msg.id !== undefined) {
    if (seen.has(msg.id)) return;
    seen.add(msg.id);
    handled.push(msg.id);
    lastId = Math.max(lastId, msg.id);
  }
  const data = msg.data || {};
  const turnId = msg.turn || data.turn_id;
  switch (msg.event) {
    case "ack": {
      const turn = turnFor(data.turn_id);
      if (!turn.user.textContent && awaitingAck !== null) turn.user.textContent = awaitingAck;
      if (turn.badge.dataset.status === "queued") setStatus(turn, data.status === "queued" ? "queued" : data.status);
      awaitingAck = null;
      if (textarea) { textarea.value = ""; localStorage.removeItem(DRAFT_KEY); }
      showBanner("");
      break;
    }
    case "turn.accepted": {
      const turn = turnFor(turnId);
      turn.user.textContent = data.message;
      if (!turn.root.dataset.status) setStatus(turn, "queued");
      break;
    }
    case "turn.started": setStatus(turnFor(turnId), "running"); break;
    case "model.called": {
      const card = stepFor(turnFor(turnId), data.step_index);
      fact(card, "Model", `${data.model} (${data.endpoint})`);
      fact(card, "Tokens", `${data.input_tokens} in / ${data.output_tokens} out`);
      fact(card, "Cost", data.cost ?? "–");
      fact(card, "Latency", `${data.latency_ms} ms`);
      card.meta.textContent = ` · ${data.input_tokens + data.output_tokens} tokens · ${data.latency_ms} ms`;
      break;
    }
    case "step.rationale": fact(stepFor(turnFor(turnId), data.step_index), "Rationale", data.rationale || "–"); break;
    case "model.token": tokens += 1; turnFor(turnId).live.textContent += data.text || ""; break;
    case "policy.decision": {
      const box = toolFor(turnFor(turnId), data.call_node_id, data.tool);
      toolFact(box, "Policy", `${data.outcome}${(data.reasons || []).length ? `: ${data.reasons.join("; ")}` : ""}`);
      break;
    }
    case "tool.call": {
      const box = toolFor(turnFor(turnId), data.node_id, data.tool);
      toolFact(box, "Arguments", data.arguments || {}, true);
      break;
    }
    case "tool.result": {
      const box = toolFor(turnFor(turnId), data.node_id, data.tool);
      toolFact(box, "Result", data.ok ? data.output : `${data.status}: ${data.error || ""}`, true);
      if (data.latency_ms !== undefined) toolFact(box, "Latency", `${data.latency_ms} ms`);
      box.root.dataset.status = data.status;
      break;
    }
    case "policy.denied": {
      const box = toolFor(turnFor(turnId), data.node_id, data.tool);
      toolFact(box, "Arguments", data.arguments || {}, true);
      toolFact(box, "Policy", `denied: ${data.reason}`);
      break;
    }
    case "turn.waiting": {
      const turn = turnFor(turnId);
      if (data.reason === "tool_running") {
        setStatus(turn, "running");
        toolFact(toolFor(turn, data.node_id, data.tool), "Status", "running in the background");
      } else {
        setStatus(turn, "waiting");
        approvalBox(turnId, data);
      }
      break;
    }
    case "approval.decided": approvalDecided(turnId, data); break;
    case "budget.warning": {
      const turn = turnFor(turnId);
      turn.problem.textContent = `Budget warning: ${data.label || data.scope || "a budget"} is ${data.percent ?? 80}% used.`;
      break;
    }
    case "turn.completed": {
      const turn = turnFor(turnId);
      setStatus(turn, "completed");
      turn.live.textContent = "";
      turn.answer.textContent = data.final_answer || "";
      turn.problem.textContent = "";
      refreshMeter();
      break;
    }
    case "turn.failed": {
      const turn = turnFor(turnId);
      setStatus(turn, "failed");
      turn.live.textContent = "";
      const code = data.reason || data.status;
      const resets = data.budget?.resets_at ? ` It resets at ${new Date(data.budget.resets_at).toLocaleString()}.` : "";
      turn.problem.textContent = `${data.detail || code}. ${advice(code)}${resets}`;
      refreshMeter();
      break;
    }
    case "turn.cancelled": setStatus(turnFor(turnId), "cancelled"); break;
    case "error": {
      const retry = data.details?.retry_after ? ` (retry in ${Math.ceil(data.details.retry_after)} s)` : "";
      showBanner(`${data.message} ${advice(data.code)}${retry}`);
      awaitingAck = null;  // the message stays in the box, to send again
      break;
    }
    default: break;
  }
}

// --------------------------------------------------------------------------- the connection

function signInAgain() {
  stopped = true;
  if (textarea && textarea.value) localStorage.setItem(DRAFT_KEY, textarea.value);
  const next = encodeURIComponent(cfg.pagePath);
  window.location.assign(`${cfg.loginUrl}?expired=1&next=${next}`);
}

// A refused handshake reaches the browser as a bare 1006: ask the page why.
async function probe() {
  try {
    const response = await fetch(cfg.meterUrl, { credentials: "same-origin" });
    if (response.status === 401) { signInAgain(); return false; }
    if (response.status === 404) {
      stopped = true;
      setConn("closed", "This session is no longer available to you.");
      return false;
    }
  } catch { /* the server is down: keep trying */ }
  return true;
}

function connect() {
  if (stopped) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = `tenant=${encodeURIComponent(cfg.tenant)}&last_event_id=${lastId}`;
  setConn(attempt ? "reconnecting" : "connecting", attempt ? `Reconnecting (attempt ${attempt})…` : "Connecting…");
  ws = new WebSocket(`${scheme}://${location.host}${cfg.websocket}?${query}`);
  ws.addEventListener("open", () => {
    attempt = 0;
    setConn("open", "Connected");
  });
  ws.addEventListener("message", (e) => {
    try { handle(JSON.parse(e.data)); } catch (err) { console.error(err); }
  });
  ws.addEventListener("close", async (e) => {
    ws = null;
    if (stopped) return;
    if (e.code === 4401) { signInAgain(); return; }
    if (e.code === 4403 || e.code === 4404) {
      stopped = true;
      setConn("closed", e.code === 4404 ? "This session is no longer available to you." : "You no longer have access to this session.");
      return;
    }
    attempt += 1;
    const delay = Math.min(10000, 500 * 2 ** (attempt - 1)) * (0.75 + Math.random() / 2);
    setConn("reconnecting", `Connection lost; reconnecting in ${Math.ceil(delay / 1000)} s…`);
    if (!(await probe())) return;
    setTimeout(connect, delay);
  });
}

async function refreshMeter() {
  let response;
  try { response = await fetch(cfg.meterUrl, { credentials: "same-origin" }); } catch { return; }
  if (response.status === 401) { signInAgain(); return; }
  if (!response.ok) return;
  const body = await response.json();
  for (const [key, figures] of Object.entries(body)) {
    const meter = document.getElementById(`meter-${key}`);
    const text = document.getElementById(`meter-${key}-text`);
    if (!meter || !text) continue;
    meter.value = figures.percent ?? 0;
    text.textContent = figures.limit
      ? `${figures.tokens} of ${figures.limit} tokens (${figures.percent}%) · cost ${figures.cost}`
      : `${figures.tokens} tokens · cost ${figures.cost} (no cap)`;
  }
}

function send() {
  const text = textarea.value;
  if (!text.trim()) return;
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    showBanner("Not connected. Your message is kept; it can be sent once the connection is back.");
    return;
  }
  awaitingAck = text;
  ws.send(JSON.stringify({ type: "message", content: text }));
}

if (composer) {
  const draft = localStorage.getItem(DRAFT_KEY);
  if (draft) textarea.value = draft;
  textarea.addEventListener("input", () => localStorage.setItem(DRAFT_KEY, textarea.value));
  textarea.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  composer.addEventListener("submit", (e) => { e.preventDefault(); send(); });
}

// For the browser tests and curious people: what the page has shown so far.
window.wardenChat = {
  handled, get tokens() { return tokens; }, get lastId() { return lastId; }, get socket() { return ws; },
};
refreshMeter();
connect();
