"""``leadflow agent``: the streaming responder that answers every inbound chat within seconds.

It reads the messages topic from its own offsets in PostgreSQL (reader ``agent``), like the landing
and the dispatcher, but never stops: records are read as they arrive. Each contact's inbound chat
messages are held until the contact has been quiet for the burst window (or has waited the longest
allowed), then answered once. Replies of different contacts are decided and sent in parallel by a
pool of workers; one contact is never in two workers at once, so its replies stay in order.

Offsets are stored only up to the oldest record whose burst is not settled yet: a crash re-reads
what was not answered, and the claim in ``agent_replies`` keeps what was answered from being
answered again. A sent reply is produced back onto the messages topic as an outbound message (the
same key as the lead's, so the same partition), so the landing stores it like any other message:
the qualification reads it as an agent turn and the funnel counts its response time.

Visits: for a contact already resolved into a lead, the conversation carries the lead's open offer and next
visit; a decision that asks for a visit write (book, offer, confirm, cancel, move: ``Decision.visit``) has it
made in the same transaction as the reply's claim, and the reply says what came of it. A burst read again
finds its claim and the write is rolled back to before it, so a visit is never booked twice.

Scale-out: agents started alike share the partitions (``offsets.Shares``): each takes a fair share,
gives some up when another starts (after answering what it holds on them) and takes a dead one's
within seconds. Or, set by hand, process ``member`` of ``members`` owns the partitions
``p % members == member`` (a StatefulSet's pod index). Each contact's messages are on one partition
(the key), so a contact belongs to one process.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg2.extensions
import psycopg2.pool
from confluent_kafka import Consumer, KafkaException, Producer

from leadflow.agent import history, replies
from leadflow.agent.config import AgentConfig
from leadflow.agent.decision import Action, Conversation, Decision, Policy, Visits, silence
from leadflow.agent.notify import Notifier
from leadflow.agent.replies import Burst, Inbound
from leadflow.agent.respond import respond
from leadflow.agent.store import agent_configs
from leadflow.agent.voice import voice_of
from leadflow.appointments import dialog
from leadflow.appointments import store as appointments
from leadflow.appointments import texts as visit_texts
from leadflow.appointments.rules import RulesError
from leadflow.config import Settings
from leadflow.db.connection import connect
from leadflow.events import ChannelMessage, Contact, OutboundCommand
from leadflow.kafka import assign_from, cluster_id, make_consumer, make_producer, partitions_of
from leadflow.landing import check_offsets_in_log
from leadflow.offsets import Shares, lock_offsets, store_offsets
from leadflow.outbound.errors import Rejected, RetryLater, Skip
from leadflow.outbound.senders import Sender
from leadflow.qualification import answers

log = logging.getLogger(__name__)
READER = "agent"
CHAT_CHANNELS = frozenset({"telegram", "whatsapp"})
LLM_WIDTH = 8  # LLM brokers' pool: this many times LEADFLOW_AGENT_WORKERS, up to LLM_WORKERS_MAX
LLM_WORKERS_MAX = 512  # 256 measured no better than fewer: past this, threads only cost memory
DB_CONNECTIONS = 32  # per agent process, whatever its worker count
MAX_ATTEMPTS = 4  # a chat reply is worth retrying for seconds, not hours: then it is failed, with the reason
SHARE_CHECK_S = 2.0  # how often a sharing agent looks for agents started or gone
GIVE_WAIT_S = 60.0  # longest a partition given up waits for the answers being sent on it
ASKED_REMEMBERED = 100_000  # contacts whose pending question is kept in memory (a few MB)
FETCH_WAIT_MS = 20  # ~50 idle fetches a second: nothing next to a reply held ~200 ms by the embedded broker
ContactKey = tuple[int, str, str]
# The broker's LLM policy from its id and ``llm`` settings (``broker_llms.BrokerLLMs``); None: offline.
LLMFactory = Callable[[int, dict[str, Any]], Policy | None]


@dataclass(frozen=True)
class Broker:
    broker_id: int
    slug: str
    country: str
    config: AgentConfig
    llm: dict[str, Any] = field(default_factory=dict)
    opt_out_words: tuple[str, ...] = ()  # the broker's own, from its campaign settings


@dataclass
class Stats:
    """What the process did since it started (``leadflow agent run`` logs it; tests and the bench read it)."""

    records: int = 0
    stale: int = 0
    bursts: int = 0
    messages_answered: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    errors: int = 0


class Database:
    """At most ``size`` connections in use at once; a worker waits for one, and holds it only for its
    queries — never while a provider or a model is being called — so hundreds of workers can wait on
    the network with a few connections."""

    def __init__(self, url: str, size: int) -> None:
        # minconn = maxconn: psycopg2's pool closes every connection given back beyond minconn, and a
        # worker would then reconnect (under the pool's lock) for each transaction.
        self.pool = psycopg2.pool.ThreadedConnectionPool(size, size, url)
        self.slots = threading.BoundedSemaphore(size)

    @contextmanager
    def cursor(self) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor in its own transaction (committed when the block ends, rolled back on an error)."""
        with self.slots:
            conn = self.pool.getconn()
            try:
                with conn, conn.cursor() as cur:
                    yield cur
            finally:
                self.pool.putconn(conn)

    def close(self) -> None:
        self.pool.closeall()


class Directory:
    """Each broker's agent settings, re-read every few seconds: a change applies without a restart."""

    def __init__(self, db: Database, refresh_s: float = 5.0) -> None:
        self.db, self.refresh_s = db, refresh_s
        self.brokers: dict[int, Broker] = {}
        self.loaded_at = float("-inf")

    def get(self, broker_id: int) -> Broker | None:
        if time.monotonic() - self.loaded_at > self.refresh_s or broker_id not in self.brokers:
            self.reload()
        return self.brokers.get(broker_id)

    def reload(self) -> None:
        if time.monotonic() - self.loaded_at < 0.5:  # an unknown broker id must not hammer the database
            return
        with self.db.cursor() as cur:
            configs = agent_configs(cur)
            cur.execute("""SELECT b.broker_id, b.slug, b.country, coalesce(s.llm, '{}'),
                                  coalesce(s.campaigns -> 'opt_out_words', '[]')
                           FROM leadflow.brokers b LEFT JOIN leadflow.broker_settings s USING (broker_id)""")
            self.brokers = {int(b): Broker(int(b), slug, country, configs[int(b)], llm, _words(own))
                            for b, slug, country, llm, own in cur.fetchall() if int(b) in configs}
        self.loaded_at = time.monotonic()


def _words(value: object) -> tuple[str, ...]:
    return tuple(str(w) for w in value) if isinstance(value, list) else ()


@dataclass
class _Held:
    burst: Burst
    first: float
    last: float
    quiet_s: float = 0.0  # how long the contact must be quiet before the burst is answered


def quiet_needed(text: str, burst_s: float, asked: str | None = None) -> float:
    """A fragment ("hola", "busco depto") is usually followed by more: wait the whole burst window. A
    finished thought (a question, or a sentence of several words) is answered after half of it, and so
    is the answer to the question the bot just asked ("3 dormitorios" after "¿cuántos dormitorios?")."""
    stripped = text.strip()
    finished = stripped.endswith(("?", ".", "!")) or len(stripped.split()) >= 5
    if not finished and asked is not None and stripped:
        finished = (answers.short_answer(stripped) is not None or answers.is_yes(stripped)
                    or answers.is_no(stripped) or any(ch.isdigit() for ch in stripped)
                    or answers.explicit(stripped, asked, english=False) != stripped)
    return burst_s / 2 if finished else burst_s


class LeadAgent:
    """One agent process; ``run(stop)`` until ``stop`` is set."""

    def __init__(self, settings: Settings, senders: dict[str, Sender], *, llm: LLMFactory | None = None,
                 notifier: Notifier | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 burst_s: float | None = None, max_wait_s: float | None = None, workers: int | None = None,
                 member: int | None = None, members: int | None = None) -> None:
        self.settings = settings
        self.senders = senders
        self.llm = llm
        self.notifier = notifier
        self.clock = clock
        self.burst_s = settings.agent_burst_ms / 1000 if burst_s is None else burst_s
        self.max_wait_s = max(settings.agent_max_wait_ms / 1000 if max_wait_s is None else max_wait_s, self.burst_s)
        self.workers = workers or settings.agent_workers
        self.member = settings.agent_member if member is None else member
        self.members = members or settings.agent_members
        if not 0 <= self.member < self.members:
            raise ValueError(f"agent member {self.member} of {self.members}: the member is 0 … members - 1")
        self.max_age = timedelta(seconds=settings.agent_max_age_s)
        self.topic = settings.topics.messages
        self.stats = Stats()
        self.partitions: list[int] = []
        self._lock = threading.Lock()
        self._held: dict[ContactKey, _Held] = {}
        self._busy: dict[ContactKey, tuple[Future[None], Burst]] = {}
        self._retrying: set[int] = set()
        self._unsettled: dict[int, Counter[int]] = {}
        self._read_upto: dict[int, int] = {}
        self._unpublished: list[ChannelMessage] = []
        # What the bot's latest reply to each contact asked (a reply to it is an answer, not a fragment).
        # Only a hint for the burst window, so bounded and lost on restart without harm.
        self._asked: OrderedDict[ContactKey, str] = OrderedDict()
        self.ready = threading.Event()  # set once the partitions are assigned (tests wait for it)

    # --- the loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> Stats:
        # Workers spend most of a turn waiting (on the shared qualifier pass, the provider): they share at
        # most DB_CONNECTIONS connections, so a wide pool does not take a PostgreSQL's connection budget.
        self.db = Database(self.settings.database_url, min(self.workers, DB_CONNECTIONS) + 2)
        self.directory = Directory(self.db)
        self.producer: Producer = make_producer(self.settings.kafka_bootstrap_servers)
        # A short fetch wait: a lead's message must not sit ~200 ms in the embedded broker (see make_consumer).
        consumer = make_consumer(self.settings.kafka_bootstrap_servers, fetch_wait_ms=FETCH_WAIT_MS)
        executor = ThreadPoolExecutor(self.workers, thread_name_prefix="agent")
        shares: Shares | None = None
        shares_conn: psycopg2.extensions.connection | None = None
        # LLM brokers' turns mostly wait on the model: they get their own, wider pool, so a slow model
        # neither holds up the offline brokers nor is held to their CPU-sized pool.
        self._llm_executor = ThreadPoolExecutor(min(self.workers * LLM_WIDTH, LLM_WORKERS_MAX),
                                                thread_name_prefix="agent-llm")
        try:
            cluster = cluster_id(consumer)
            every = [(self.topic, p) for p in partitions_of(consumer, self.topic)]
            if self.members == 1:
                # Not split by hand: the agents running share the partitions, and take a dead one's.
                shares_conn = connect(self.settings.database_url)
                shares = Shares(shares_conn, READER, cluster, every)
                shares.rebalance()
                self._take(consumer, cluster, sorted(p for _, p in shares.owned))
            else:
                self._take(consumer, cluster, [p for _, p in every if p % self.members == self.member])
            self._republish_unlanded()
            log.info("agent %s reading %s partitions %s", "sharing" if shares else f"{self.member}/{self.members}",
                     self.topic, self.partitions)
            self.ready.set()
            saved = dict(self._read_upto)
            next_chores = next_share = 0.0
            while not stop.is_set():
                for message in consumer.consume(num_messages=500, timeout=0.05):
                    if message.error() is not None:
                        raise KafkaException(message.error())
                    self._read(message.partition() or 0, message.offset() or 0, message.value())
                self._start_due(executor)
                self._reap()
                if time.monotonic() >= next_chores:
                    next_chores = time.monotonic() + 0.5
                    saved = self._save_offsets(cluster, saved)
                    self._start_retries(executor)
                    self._publish_pending()
                    self._record_usage()
                if shares is not None and time.monotonic() >= next_share:
                    next_share = time.monotonic() + SHARE_CHECK_S
                    self._rebalance(shares, consumer, cluster)
            executor.shutdown(wait=True)
            self._llm_executor.shutdown(wait=True)
            self._reap()
            self._save_offsets(cluster, saved)
            self.producer.flush(10)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            self._llm_executor.shutdown(wait=True, cancel_futures=True)
            consumer.close()
            self.db.close()
            if shares_conn is not None:
                shares_conn.close()  # gives the partitions up: the other agents take them at their next check
        return self.stats

    def _take(self, consumer: Consumer, cluster: str, new: list[int]) -> None:
        """Start reading ``new`` partitions from their stored offsets (the others read on where they are)."""
        stored: dict[tuple[str, int], int] = {}
        if new:
            with self.db.cursor() as cur:
                stored = lock_offsets(cur, READER, cluster, [(self.topic, p) for p in new])
            # A wiped broker under the same cluster id: reading on would skip its new messages unanswered.
            check_offsets_in_log(consumer, self.settings.kafka_bootstrap_servers, cluster, stored, reader=READER)
        with self._lock:
            for p in new:
                self._read_upto[p] = stored[(self.topic, p)]
                self._unsettled[p] = Counter()
            self.partitions = sorted({*self.partitions, *new})
            positions = {(self.topic, p): self._read_upto[p] for p in self.partitions}
        assign_from(consumer, positions)

    def _give(self, consumer: Consumer, cluster: str, gone_tps: set[tuple[str, int]]) -> None:
        """Stop reading partitions another agent is to take, and leave their offsets where it must start.

        Bursts held but not started are dropped: their records stay unsettled, so the next owner reads
        and answers them. Bursts being answered are waited for (their claim also keeps the next owner
        from answering them twice).
        """
        gone = {p for _, p in gone_tps}
        with self._lock:
            self.partitions = [p for p in self.partitions if p not in gone]
            positions = {(self.topic, p): self._read_upto[p] for p in self.partitions}
        assign_from(consumer, positions)

        def theirs(burst: Burst) -> bool:  # a contact's messages are all on one partition
            return bool(burst.messages) and burst.messages[-1].partition in gone

        with self._lock:
            answering = [future for future, burst in self._busy.values() if theirs(burst)]
        wait(answering, timeout=GIVE_WAIT_S)
        self._reap()
        with self._lock:
            for key in [key for key, held in self._held.items() if theirs(held.burst)]:
                del self._held[key]
            final = {(self.topic, p): min(self._unsettled[p]) if self._unsettled[p] else self._read_upto[p]
                     for p in gone}
            for p in gone:
                self._unsettled.pop(p, None)
                self._read_upto.pop(p, None)
        with self.db.cursor() as cur:
            store_offsets(cur, READER, cluster, final)

    def _rebalance(self, shares: Shares, consumer: Consumer, cluster: str) -> None:
        before = set(self.partitions)
        if shares.rebalance(before_release=lambda tps: self._give(consumer, cluster, tps)):
            new = sorted(p for _, p in shares.owned if p not in before)
            self._take(consumer, cluster, new)
            if new:
                self._republish_unlanded()
            log.info("agent now reading %s partitions %s", self.topic, self.partitions)

    def _read(self, partition: int, offset: int, value: bytes | None) -> None:
        self.stats.records += 1
        self._read_upto[partition] = offset + 1
        try:
            event = orjson.loads(value or b"")
            if (event.get("event_type") != "message" or event.get("direction") != "inbound"
                    or event.get("channel") not in CHAT_CHANNELS):
                return
            broker = self.directory.get(int(event["broker_id"]))
            if broker is None or not broker.config.enabled:
                return
            contact = event.get("contact") or {}
            contact_key = contact.get("channel_user_id") or contact.get("phone_e164")
            sent_at = datetime.fromisoformat(event["sent_at"])
            received_at = datetime.fromisoformat(event.get("received_at") or event["sent_at"])
            if self.clock() - sent_at > self.max_age:
                # A reply to an old message would arrive out of place: a first start reading the topic's
                # history, or a provider redelivering days later. Landed all the same, answered by people.
                self.stats.stale += 1
                return
            inbound = Inbound(str(event["provider_message_id"]), event.get("text") or "",
                              str(event.get("message_type") or "text"), sent_at, received_at, partition, offset)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Not the agent's to keep: the landing dead-letters what it cannot read.
            log.warning("agent skips unreadable record %s@%s: %s", partition, offset, type(exc).__name__)
            return
        if not contact_key:
            return
        key: ContactKey = (broker.broker_id, event["channel"], str(contact_key))
        now = time.monotonic()
        with self._lock:
            held = self._held.get(key)
            if held is None:
                chat_id = event.get("conversation_id") if event["channel"] == "telegram" else contact_key
                held = self._held[key] = _Held(Burst(broker.broker_id, broker.slug, event["channel"], str(contact_key),
                                                     str(chat_id or contact_key), contact.get("phone_e164"),
                                                     contact.get("display_name"), contact), now, now)
            held.burst.messages.append(inbound)
            held.last = now
            held.quiet_s = quiet_needed(inbound.text, self.burst_s, self._asked.get(key))
            self._unsettled[partition][offset] += 1

    def _start_due(self, executor: ThreadPoolExecutor) -> None:
        now = time.monotonic()
        with self._lock:
            due = [key for key, held in self._held.items() if key not in self._busy
                   and (now - held.last >= held.quiet_s or now - held.first >= self.max_wait_s)]
            for key in due:
                burst = self._held.pop(key).burst
                broker = self.directory.brokers.get(burst.broker_id)
                pool = self._llm_executor if broker is not None and broker.config.policy == "llm" else executor
                self._busy[key] = (pool.submit(self._answer, burst), burst)

    def _reap(self) -> None:
        with self._lock:
            done = [(key, future, burst) for key, (future, burst) in self._busy.items() if future.done()]
            for key, future, burst in done:
                del self._busy[key]
                error = future.exception()
                if error is None:
                    for m in burst.messages:
                        self._settle_offset(m.partition, m.offset)
                    continue
                # The database or the broker failed mid-answer: nothing is lost, the burst is answered later.
                self.stats.errors += 1
                log.error("agent could not answer %s on %s: %s", burst.contact_key, burst.channel, error)
                held = self._held.get(key)
                now = time.monotonic()
                if held is None:
                    self._held[key] = _Held(burst, now, now + 1.0)
                else:
                    held.burst.messages[:0] = burst.messages

    def _settle_offset(self, partition: int, offset: int) -> None:
        counts = self._unsettled[partition]
        counts[offset] -= 1
        if counts[offset] <= 0:
            del counts[offset]

    def _save_offsets(self, cluster: str, saved: dict[int, int]) -> dict[int, int]:
        with self._lock:
            positions = {p: min(self._unsettled[p]) if self._unsettled[p] else self._read_upto[p]
                         for p in self.partitions}
        changed = {(self.topic, p): o for p, o in positions.items() if saved.get(p) != o}
        if changed:
            with self.db.cursor() as cur:
                store_offsets(cur, READER, cluster, changed)
        return positions

    # --- one burst ----------------------------------------------------------------------------------

    def _answer(self, burst: Burst) -> None:
        broker = self.directory.get(burst.broker_id)
        if broker is None:
            return
        self.stats.bursts += 1
        self.stats.messages_answered += len(burst.messages)
        with self.db.cursor() as cur:
            lead_id = replies.lead_of(cur, burst.broker_id, burst.channel, burst.contact_key)
            handler = replies.handler_now(cur, burst, lead_id)
            turns = history.merge(replies.landed(cur, burst, lead_id), replies.remembered(cur, burst),
                                  burst.pending())
            visits = self._visits(cur, burst.broker_id, lead_id)
        conversation: Conversation | None = None
        if handler is not None and handler.handler == "person" and handler.by_person:
            decision = silence("taken_over")
        else:
            released = handler.switched_at if handler is not None and handler.handler == "bot" else None
            conversation = Conversation(history.since_release(turns, released), broker.config, broker.country,
                                        burst.channel, opt_out_words=broker.opt_out_words, visits=visits)
            decision = self._decide(broker, conversation)
        notice = None
        with self.db.cursor() as cur:
            visited = False
            if decision.visit is not None and lead_id is not None and visits is not None and conversation is not None:
                # The visit is written in the reply's transaction: a burst answered before (its claim found below)
                # undoes it, so a re-read never books twice.
                cur.execute("SAVEPOINT visit")
                decision, visited = self._visit(cur, burst, lead_id, decision, conversation), True
            policy = _policy_name(broker.config, decision)
            self.stats.decisions[decision.action] += 1
            claim = replies.claim(cur, burst, lead_id, decision, policy, _destination(burst))
            if visited and not claim.new:
                cur.execute("ROLLBACK TO SAVEPOINT visit")
            if claim.new and decision.action == "handoff" and "holding" not in decision.reasons:
                reason = ", ".join(decision.reasons) or "handoff"
                replies.hand_off(cur, burst, lead_id, f"bot: {reason}")
                notice = replies.notification_row(cur, claim.reply_id, burst, lead_id, broker.config.handoff_channel,
                                                  _notice_text(broker, burst, lead_id, reason))
        self._remember_asked((burst.broker_id, burst.channel, burst.contact_key),
                             decision.asks if claim.status in ("claimed", "retry") else None)
        if claim.status in ("claimed", "retry"):
            self._send(claim.reply_id, broker, burst, claim.lead_id, claim.body or "",
                       claim.meta(burst.last.provider_id))
        if notice is not None and self.notifier is not None:
            self.notifier.deliver(self.db.cursor, notice)

    def _visits(self, cur: psycopg2.extensions.cursor, broker_id: int, lead_id: int | None) -> Visits | None:
        """The lead's open offer and next visit; None before the lead exists (the bot then proposes in words)."""
        if lead_id is None:
            return None
        try:
            _rules, timezone = appointments.broker_rules(cur, broker_id)
        except (appointments.AppointmentError, RulesError) as exc:
            log.warning("broker %s: visits not offered by the agent: %s", broker_id, exc)
            return None
        now = self.clock()
        return Visits(now, timezone, appointments.open_offer(cur, broker_id, lead_id),
                      appointments.upcoming(cur, broker_id, lead_id, now))

    def _visit(self, cur: psycopg2.extensions.cursor, burst: Burst, lead_id: int, decision: Decision,
               conversation: Conversation) -> Decision:
        """Make the visit write the decision asks for and say what came of it (after the policy's own words)."""
        step = decision.visit
        assert step is not None
        try:
            outcome = dialog.carry_out(cur, burst.broker_id, lead_id, step.move, self.clock(), source="agent",
                                       channel=burst.channel)
        except (appointments.AppointmentError, RulesError) as exc:
            cur.execute("ROLLBACK TO SAVEPOINT visit")
            log.warning("broker %s lead %s: visit not written (%s); the policy's words are sent", burst.broker_id,
                        lead_id, exc)
            return dataclasses.replace(decision, visit=None, reasons=(*decision.reasons, "visit_failed"))
        text = visit_texts.render(outcome, voice_of(conversation))
        if not text:  # nothing to confirm or cancel: the policy's own words
            return dataclasses.replace(decision, reasons=(*decision.reasons, f"visit_{outcome.kind}"))
        asks = None
        if outcome.kind in ("booked", "rescheduled") and step.follow_up:
            text, asks = f"{text} {step.follow_up}", step.follow_up_asks
        action: Action = "handoff" if outcome.kind == "nobody_free" else "propose_visit" \
            if outcome.offer is not None and outcome.kind in ("offered", "cancelled") else "answer"
        reasons = (*decision.reasons, f"visit_{outcome.kind}" + (f":{outcome.note}" if outcome.note else ""),
                   *(("needs_person",) if outcome.kind == "nobody_free" else ()))
        return Decision(action, " ".join(p for p in (step.preface, text) if p), asks, reasons, step)

    def _remember_asked(self, key: ContactKey, asks: str | None) -> None:
        with self._lock:
            self._asked.pop(key, None)
            if asks is not None:
                self._asked[key] = asks
                while len(self._asked) > ASKED_REMEMBERED:
                    self._asked.popitem(last=False)

    def _decide(self, broker: Broker, conversation: Conversation) -> Decision:
        llm = self.llm(broker.broker_id, broker.llm) if self.llm is not None and broker.config.policy == "llm" \
            else None
        return respond(conversation, llm)

    def _send(self, reply_id: int, broker: Broker, burst: Burst, lead_id: int | None, body: str,
              meta: dict[str, Any]) -> None:
        with self.db.cursor() as cur:
            attempts = replies.mark_sending(cur, reply_id)
        if attempts is None:
            return  # another worker or process has it
        command = OutboundCommand.build(
            send_id=reply_id, broker_id=burst.broker_id, broker_slug=broker.slug, campaign_id=0,
            lead_id=lead_id or 0, step=0, action="message", channel=burst.channel,
            payload=_payload(burst, body), created_at=self.clock())
        sender = self.senders.get(burst.channel)
        # The reply's time is when it left: the lead can answer it before the provider's answer reaches us.
        started = self.clock()
        try:
            if sender is None:
                raise Rejected(f"no sender for {burst.channel} in this agent")
            provider_id = sender.send(command)
        except RetryLater as exc:
            with self.db.cursor() as cur:
                if attempts >= MAX_ATTEMPTS:
                    replies.settle(cur, reply_id, "failed", f"{exc} (after {attempts} attempts)")
                    self.stats.replies["failed"] += 1
                else:
                    # Seconds, not the provider's minutes: a late answer to a chat is worth little, and a
                    # reply the lead has since outgrown is dropped when it comes up again.
                    wait = min(max(exc.after_s if exc.after_s < 30 else 0, 2.0 ** attempts), 30.0)
                    replies.settle(cur, reply_id, "retry", str(exc), retry_at=self.clock() + timedelta(seconds=wait))
                    self.stats.replies["retry"] += 1
            return
        except Skip as exc:
            with self.db.cursor() as cur:
                replies.settle(cur, reply_id, "dropped", str(exc))
            self.stats.replies["dropped"] += 1
            return
        except Rejected as exc:
            with self.db.cursor() as cur:
                replies.settle(cur, reply_id, "failed", str(exc))
            self.stats.replies["failed"] += 1
            return
        with self.db.cursor() as cur:
            replies.settle(cur, reply_id, "sent", provider_id=provider_id, sent_at=started)
        self.stats.replies["sent"] += 1
        self._publish(_reply_message(burst, reply_id, body, started, {**meta, "provider_message_id": provider_id}))

    def _record_usage(self) -> None:
        record = getattr(self.llm, "record_usage", None)
        if record is not None:
            with self.db.cursor() as cur:
                record(cur)

    # --- retries ------------------------------------------------------------------------------------

    def _start_retries(self, executor: ThreadPoolExecutor) -> None:
        with self.db.cursor() as cur:
            cur.execute("""SELECT reply_id FROM leadflow.agent_replies
                           WHERE status IN ('claimed', 'retry') AND next_attempt_at <= %s
                             AND broker_id = ANY(%s) ORDER BY next_attempt_at LIMIT 200""",
                        (self.clock(), list(self.directory.brokers)))
            due = [int(r[0]) for r in cur.fetchall()]
        for reply_id in due:
            with self._lock:
                if reply_id in self._retrying:
                    continue
                self._retrying.add(reply_id)
            executor.submit(self._retry, reply_id)

    def _retry(self, reply_id: int) -> None:
        try:
            with self.db.cursor() as cur:
                cur.execute("""SELECT broker_id, channel, contact_key, reply_to, lead_id, body, action, asks, reasons,
                                      policy, destination, status
                               FROM leadflow.agent_replies WHERE reply_id = %s""", (reply_id,))
                row = cur.fetchone()
                if row is None or row[11] not in ("claimed", "retry"):
                    return
                (broker_id, channel, contact_key, reply_to, lead_id, body, action, asks, reasons, policy,
                 destination, _status) = row
                key: ContactKey = (int(broker_id), channel, contact_key)
                with self._lock:
                    # This contact is partitioned elsewhere (another member) or is being answered right now.
                    if key in self._busy or not self._owns(destination):
                        return
                    waiting = key in self._held
                if waiting or replies.newer_inbound(cur, reply_id):
                    replies.settle(cur, reply_id, "dropped", "the lead wrote again before it could be sent")
                    self.stats.replies["dropped"] += 1
                    return
            broker = self.directory.get(int(broker_id))
            if broker is None:
                return
            at = destination_time(destination)
            burst = Burst(int(broker_id), broker.slug, channel, contact_key, destination["chat_id"],
                          destination.get("contact", {}).get("phone_e164"), None, destination.get("contact", {}),
                          [Inbound(reply_to, "", "text", at, at, -1, -1)])
            self._send(reply_id, broker, burst, lead_id, body or "",
                       replies.payload_meta(action, asks, reasons or [], reply_to, policy))
        except Exception:  # a retry that fails is retried by the next round; the loop must go on
            self.stats.errors += 1
            log.exception("agent retry of reply %s failed", reply_id)
        finally:
            with self._lock:
                self._retrying.discard(reply_id)

    def _owns(self, destination: dict[str, Any]) -> bool:
        partition = destination.get("partition")
        return partition is None or int(partition) in self.partitions

    # --- producing replies back onto the messages topic --------------------------------------------

    def _publish(self, message: ChannelMessage) -> None:
        done = threading.Event()
        failure: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failure.append(str(err))
            done.set()

        try:
            self.producer.produce(self.topic, key=message.kafka_key(), value=message.model_dump_json().encode(),
                                  on_delivery=delivered)
            deadline = time.monotonic() + 15
            while not done.is_set() and time.monotonic() < deadline:
                self.producer.poll(0.02)
        except (BufferError, KafkaException) as exc:
            failure.append(str(exc))
        if failure or not done.is_set():
            # Sent but not recorded on the topic yet: kept and produced again (the landing absorbs a twin).
            log.warning("agent reply %s not acknowledged by Kafka (%s); will produce it again",
                        message.provider_message_id, failure[:1] or "timeout")
            with self._lock:
                self._unpublished.append(message)

    def _publish_pending(self) -> None:
        with self._lock:
            pending, self._unpublished = self._unpublished, []
        self._publish_many(pending)

    def _publish_many(self, messages: list[ChannelMessage]) -> None:
        """Produce them all, then wait once: one at a time, each waiting for its ack, an agent starting after
        its replies went unlanded for a while (the landing down) took seconds per thousand before it read."""
        if not messages:
            return
        acked: set[int] = set()

        def delivered(index: int) -> Callable[[Any, Any], None]:
            def done(err: Any, _msg: Any) -> None:
                if err is None:
                    acked.add(index)
            return done

        for index, message in enumerate(messages):
            for _attempt in range(2):
                try:
                    self.producer.produce(self.topic, key=message.kafka_key(),
                                          value=message.model_dump_json().encode(), on_delivery=delivered(index))
                    break
                except BufferError:
                    self.producer.poll(0.5)  # the local queue is full: let deliveries drain, then try again
                except KafkaException:
                    break  # not acknowledged: kept for the next round below
        self.producer.flush(15)
        missing = [m for i, m in enumerate(messages) if i not in acked]
        if missing:
            log.warning("%d agent replies not acknowledged by Kafka; will produce them again", len(missing))
            with self._lock:
                self._unpublished.extend(missing)

    def _republish_unlanded(self) -> None:
        """Replies a crash left sent but never produced: produced again (a twin already produced lands once)."""
        with self.db.cursor() as cur:
            cur.execute("""
                SELECT r.reply_id, r.broker_id, b.slug, r.channel, r.contact_key, r.body, r.sent_at, r.action,
                       r.asks, r.reasons, r.reply_to, r.policy, r.destination, r.provider_message_id
                FROM leadflow.agent_replies r JOIN leadflow.brokers b USING (broker_id)
                WHERE r.status = 'sent' AND r.sent_at > now() - interval '2 days'
                  AND NOT EXISTS (SELECT 1 FROM leadflow.raw_messages m WHERE m.broker_id = r.broker_id
                                  AND m.channel = r.channel AND m.provider_message_id = 'reply:' || r.reply_id)""")
            rows = cur.fetchall()
        again: list[ChannelMessage] = []
        for (reply_id, broker_id, slug, channel, contact_key, body, sent_at, action, asks, reasons, reply_to, policy,
             destination, provider_id) in rows:
            if not self._owns(destination):
                continue
            burst = Burst(int(broker_id), slug, channel, contact_key, destination["chat_id"], None, None,
                          destination.get("contact", {}))
            meta = {**replies.payload_meta(action, asks, reasons or [], reply_to, policy),
                    "provider_message_id": provider_id}
            again.append(_reply_message(burst, int(reply_id), body or "", sent_at, meta))
        if again:
            log.info("producing again %d sent replies not landed yet", len(again))
        self._publish_many(again)


def destination_time(destination: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(destination["inbound_at"])


def _destination(burst: Burst) -> dict[str, Any]:
    return {"chat_id": burst.chat_id, "contact": burst.contact, "partition": burst.last.partition,
            "inbound_at": burst.last.sent_at.isoformat()}


def _payload(burst: Burst, body: str) -> dict[str, Any]:
    if burst.channel == "telegram":
        return {"chat_id": burst.chat_id, "text": body}
    # The lead just wrote: the WhatsApp 24-hour window is open (the sender checks it all the same).
    return {"to": burst.chat_id, "text": body, "last_inbound_at": burst.last.sent_at.isoformat()}


def _reply_message(burst: Burst, reply_id: int, body: str, sent_at: datetime, meta: dict[str, Any]) -> ChannelMessage:
    contact = Contact.model_validate(burst.contact) if burst.contact else Contact(channel_user_id=burst.contact_key)
    return ChannelMessage.build(
        broker_id=burst.broker_id, broker_slug=burst.broker_slug, channel=burst.channel,  # type: ignore[arg-type]
        provider_message_id=replies.reply_provider_id(reply_id),
        conversation_id=burst.chat_id if burst.channel == "telegram" else None, contact=contact,
        direction="outbound", message_type="text", text=body, sent_at=sent_at, raw={history.AUTHOR_KEY: meta})


def _policy_name(config: AgentConfig, decision: Decision) -> str:
    if config.policy != "llm":
        return "offline"
    fell_back = any(r.startswith("llm_fallback") or r == "llm_unavailable" for r in decision.reasons)
    return "llm_fallback" if fell_back else "llm"


def _notice_text(broker: Broker, burst: Burst, lead_id: int | None, reason: str) -> str:
    who = burst.display_name or burst.phone or burst.contact_key
    lead = f"lead {lead_id}" if lead_id is not None else "a new contact"
    said = burst.last.text.strip()[:300]
    return (f"[{broker.slug}] {who} ({lead}, {burst.channel}) needs a person: {reason}. "
            f"Last message: \u201c{said}\u201d")
