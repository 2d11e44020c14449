"""The `leadflow` command: services, schema, brokers, the ingest API, landing and the demo.

The outer shell of the project: it resolves configuration, then calls into the domain code,
the ingest API or the Dagster definitions (imported lazily, so `leadflow services status`
stays fast).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg2

from leadflow.config import ConfigurationError, Settings, export_environment, load_settings


def _services(args: argparse.Namespace) -> int:
    from leadflow.services import manager

    if args.action == "up":
        manager.up()
        print(f"state: {Settings.from_environment().state_dir}  (stop with `leadflow services down`)")
    elif args.action == "down":
        manager.down()
    else:
        for name, line in manager.status().items():
            print(f"{name}: {line}")
    return 0


def _db(args: argparse.Namespace) -> int:
    from leadflow.db.migrate import downgrade, upgrade

    settings = export_environment()
    if args.action == "upgrade":
        upgrade(settings.database_url, args.revision or "heads")
    else:
        downgrade(settings.database_url, args.revision or "-1")
    print(f"schema {args.action}d")
    return 0


def _brokers(args: argparse.Namespace) -> int:
    from leadflow.brokers import SECRET_KINDS, add_broker, list_brokers

    settings = export_environment()
    if args.action == "add":
        overrides = dict(item.split("=", 1) for item in args.secret_env or [])
        broker = add_broker(settings.database_url, args.slug, name=args.name, country=args.country,
                            timezone=args.timezone, secret_env=overrides)
        print(f"broker {broker.slug} (id {broker.broker_id}) registered; channel secrets are read from:")
        for channel, kinds in SECRET_KINDS.items():
            for kind in kinds:
                state = "set" if broker.secret(kind) else "not set"
                print(f"  {channel:9s} {kind:22s} ${broker.secret_env_name(kind)} ({state})")
    else:
        for broker in list_brokers(settings.database_url):
            print(f"{broker.broker_id}\t{broker.slug}\t{broker.country}\t{broker.timezone}\t{broker.name}")
    return 0


def _credentials(args: argparse.Namespace) -> int:
    from leadflow import credentials

    if args.action == "new-key":
        print(credentials.new_key_text())
        return 0
    settings = export_environment()
    keys = credentials.MasterKeys.from_settings(settings)
    if args.action == "rotate":
        done = credentials.rotate(settings.database_url, keys)
        print(f"{done.resealed} credentials re-sealed under master key {done.key_id}, {done.already_current} were "
              "already")
        if done.unreadable:
            for broker_id, kind in done.unreadable:
                print(f"  not opened by any configured key: broker {broker_id} {kind}", file=sys.stderr)
            print("keep the previous keys configured until these are re-entered or their key is found",
                  file=sys.stderr)
            return 1
        print("the previous keys can now leave LEADFLOW_MASTER_KEYS_PREVIOUS")
    else:
        stored = credentials.import_environment(settings.database_url, keys, args.broker or None)
        for slug, kind in stored:
            print(f"  {slug:24s} {kind}")
        print(f"{len(stored)} credentials stored from the environment (already stored ones were left as they are)")
    return 0


def _ingest_api(args: argparse.Namespace) -> int:
    import uvicorn

    from ingest_api.app import create_app

    settings = export_environment()
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info",
                access_log=args.access_log)
    return 0


def _reports_api(args: argparse.Namespace) -> int:
    import uvicorn

    from reports_api.app import create_app
    from reports_api.security import TokenSettings
    from reports_api.workspace.publish import MessagePublisher

    settings = load_settings()
    if settings.reports_jwt_secret:
        tokens = TokenSettings.from_settings(settings)
    else:
        print("LEADFLOW_REPORTS_JWT_SECRET is not set: signing tokens with a random key for this process only "
              "(every token dies with it).", file=sys.stderr)
        tokens = TokenSettings.ephemeral(settings)
    # proxy_headers=False: the app trusts X-Forwarded-For only from LEADFLOW_TRUSTED_PROXIES (reports_api/proxies).
    # The resolved Kafka address (the embedded broker's when none is configured) for a person's replies.
    publisher = MessagePublisher(settings.kafka_bootstrap_servers, settings.topics.messages)
    uvicorn.run(create_app(settings.database_url, tokens, docs_dir=settings.docs_dir, bind_host=args.host,
                           publisher=publisher),
                host=args.host, port=args.port, log_level="info", access_log=args.access_log, proxy_headers=False)
    return 0


def _users(args: argparse.Namespace) -> int:
    import getpass

    from leadflow.users import (
        User,
        UserError,
        add_user,
        assign_leads,
        list_users,
        password_from_env,
        remove_user,
        set_disabled,
        set_role,
    )

    def described(u: User) -> str:
        return f"{u.email} ({u.role}{'' if u.broker_id is None else f', broker {u.broker_id}'})"

    settings = export_environment()
    try:
        if args.action == "add":
            if args.password_env:
                password = password_from_env(args.password_env)
            elif args.password_stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = getpass.getpass(f"password for {args.email}: ")
            user = add_user(settings.database_url, args.email, password, role=args.role, broker_slug=args.broker,
                            display_name=args.name)
            print(f"user {user.user_id}: {described(user)}")
        elif args.action == "assign":
            count = assign_leads(settings.database_url, args.email, args.lead_ids)
            print(f"{count} leads assigned to {args.email}")
        elif args.action in ("disable", "enable"):
            user = set_disabled(settings.database_url, args.email, args.action == "disable")
            print(f"user {user.user_id}: {described(user)} {args.action}d; its sessions have ended")
        elif args.action == "remove":
            user = remove_user(settings.database_url, args.email)
            print(f"user {user.user_id}: {described(user)} removed; its sessions have ended and its leads are "
                  "unassigned")
        elif args.action == "set-role":
            user = set_role(settings.database_url, args.email, args.role, args.broker)
            print(f"user {user.user_id}: now {described(user)}; its sessions have ended")
        else:
            for u in list_users(settings.database_url):
                state = "  (removed)" if u.removed else "  (disabled)" if u.disabled else ""
                print(f"{u.user_id:6d}  {u.role:10s}  {'-' if u.broker_id is None else u.broker_id!s:>6s}  {u.email}"
                      f"{state}")
    except UserError as exc:
        print(f"leadflow users {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _land(args: argparse.Namespace) -> int:
    import signal
    import threading

    from leadflow.landing import land

    settings = export_environment()
    stop: threading.Event | None = None
    if args.follow:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set() if stop else None)
    result = land(settings.database_url, settings.kafka_bootstrap_servers, settings.topics,
                  max_records_per_batch=args.batch_size, max_batches=args.max_batches, stop=stop)
    print(f"read {result.records_read} records in {result.batches} batches ({result.seconds:.2f}s): "
          f"{result.messages_landed} messages, {result.statuses_landed} statuses, "
          f"{result.dead_letters_landed} dead letters landed; {result.duplicates_absorbed} duplicates absorbed; "
          f"partitions {', '.join(sorted(result.partitions)) or 'none'}")
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    from leadflow.credentials import StoredCredentials
    from leadflow.outbound.dispatcher import dispatch
    from leadflow.outbound.senders import BlandCaller, Sender, TelegramSender, VapiCaller, WhatsAppSender

    settings = export_environment()
    stored = StoredCredentials.from_settings(settings)
    senders: dict[str, Sender] = {"telegram": TelegramSender(credentials=stored),
                                  "whatsapp": WhatsAppSender(credentials=stored),
                                  "vapi": VapiCaller(credentials=stored), "bland": BlandCaller(credentials=stored)}
    result = dispatch(settings.database_url, settings.kafka_bootstrap_servers, settings.topics, senders,
                      max_commands=args.max_sends)
    print(f"read {result.commands_read} commands ({result.malformed} unreadable): {result.sent} sent, "
          f"retry later {result.retry_later or 0}, failed {result.failed or 0}, skipped {result.skipped or 0}, "
          f"{result.not_pending} already handled")
    return 0


def _tick(args: argparse.Namespace) -> int:
    export_environment()
    from dagster import DagsterInstance

    from pipelines.definitions import defs
    from pipelines.inprocess import drain, tick

    instance = DagsterInstance.get()
    outcomes = drain(defs, instance) if args.drain else [tick(defs, instance)]
    for outcome in outcomes:
        print(f"runs: {outcome.run_keys} failed: {outcome.failed} skip: {outcome.skip_reason}")
    return 1 if any(o.failed for o in outcomes) else 0


def _dagster(args: argparse.Namespace) -> int:
    """Run the Dagster CLI with the resolved environment (it reads its instance storage before our code)."""
    export_environment()
    executable = Path(sys.executable).with_name("dagster")
    command = [str(executable) if executable.exists() else "dagster", *args.dagster_args]
    os.execvp(command[0], command)
    return 0  # not reached: exec replaces this process


def _qualify(args: argparse.Namespace) -> int:
    import orjson

    from leadflow.qualification.contract import qualify_lines
    from leadflow.qualification.llm import from_environment

    qualifier = from_environment(args.provider, args.model)
    errors: list[str] = []
    source = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    sink = sys.stdout.buffer if args.output is None else open(args.output, "wb")  # noqa: SIM115
    try:
        for row in qualify_lines(source, country=args.country, errors=errors, qualifier=qualifier):
            sink.write(orjson.dumps(row) + b"\n")
    finally:
        if source is not sys.stdin.buffer:
            source.close()
        if sink is not sys.stdout.buffer:
            sink.close()
    for error in errors:
        print(f"leadflow qualify: {error}", file=sys.stderr)
    return 1 if errors else 0


def _leads(args: argparse.Namespace) -> int:
    from leadflow.brokers import list_brokers
    from leadflow.leads.merges import MergeError, keep_apart, list_merges, unmerge

    settings = export_environment()
    try:
        if args.action == "merges":
            broker_id = None
            if args.broker:
                matches = [b.broker_id for b in list_brokers(settings.database_url) if b.slug == args.broker]
                if not matches:
                    print(f"leadflow leads: no broker {args.broker!r}", file=sys.stderr)
                    return 2
                broker_id = matches[0]
            header = ("merge", "broker", "merged", "into", "ids", "msgs")
            print("{:>6s} {:>6s} {:>8s} {:>8s} {:>4s} {:>5s}  state     reason".format(*header))
            for m in list_merges(settings.database_url, broker_id):
                state = "undone" if m.undone_at else "active"
                print(f"{m.merge_id:6d} {m.broker_id:6d} {m.merged_lead_id:8d} {m.into_lead_id:8d} {m.identities:4d} "
                      f"{m.messages:5d}  {state:8s}  {m.reason}")
        elif args.action == "unmerge":
            m = unmerge(settings.database_url, args.merge_id)
            print(f"merge {m.merge_id} undone: lead {m.merged_lead_id} is its own lead again with {m.identities} "
                  f"identities and {m.messages} messages; it and lead {m.into_lead_id} are kept apart from now on")
        else:
            keep_apart(settings.database_url, args.lead_a, args.lead_b, args.reason)
            print(f"leads {args.lead_a} and {args.lead_b} will not be merged")
    except MergeError as exc:
        print(f"leadflow leads: {exc}", file=sys.stderr)
        return 1
    return 0


def _json_argument(value: str) -> Any:
    """A JSON document given inline or as @file."""
    import json

    text = Path(value[1:]).read_text() if value.startswith("@") else value
    return json.loads(text)


def _calendar(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from leadflow.appointments.calendar_sync import sync_calendars
    from leadflow.appointments.google import Google
    from leadflow.credentials import MasterKeys, StoredCredentials
    from leadflow.db.connection import transaction

    settings = export_environment()
    broker_ids = None
    if args.broker:
        with transaction(settings.database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT broker_id FROM leadflow.brokers WHERE slug = %s", (args.broker,))
            row = cur.fetchone()
        if row is None:
            print(f"leadflow: there is no broker {args.broker!r} (`leadflow brokers list`)", file=sys.stderr)
            return 1
        broker_ids = [int(row[0])]
    client = Google.from_settings(settings, StoredCredentials.from_settings(settings))
    result = sync_calendars(settings.database_url, MasterKeys.from_settings(settings), client, datetime.now(UTC),
                            broker_ids)
    print(f"calendar: {result.created} created, {result.updated} updated, {result.deleted} deleted, "
          f"{result.not_connected} without a connected calendar, {sum(result.pending.values())} left pending, "
          f"{sum(result.failed.values())} failed; busy times read for {result.busy_read} calendars "
          f"({result.busy_intervals} intervals)")
    for reason, count in {**result.pending, **result.failed}.items():
        print(f"  {count} × {reason}")
    for broken in result.broken:
        print(f"  connection broken (broker/person {broken}): someone must connect it again")
    return 0


def _campaigns(args: argparse.Namespace) -> int:
    from leadflow.campaigns.outcomes import campaign_stats
    from leadflow.campaigns.store import CampaignError, save_campaign, save_segment

    settings = export_environment()
    try:
        if args.command == "segments":
            segment_id = save_segment(settings.database_url, args.broker, args.name, _json_argument(args.rules))
            print(f"segment {args.name!r} saved (id {segment_id}); members are evaluated by the next campaign batch")
        elif args.action == "save":
            campaign_id = save_campaign(settings.database_url, args.broker, args.name,
                                        _json_argument(args.definition), status=args.status)
            print(f"campaign {args.name!r} saved (id {campaign_id}, {args.status})")
        else:
            header = ("campaign", "sent", "deliv.", "read", "replied", "failed", "skipped", "pending", "advanced")
            print("{:30s} {:>6s} {:>6s} {:>6s} {:>7s} {:>6s} {:>7s} {:>7s} {:>8s}  success  reply".format(*header))
            for s in campaign_stats(settings.database_url):
                rates = [f"{r:7.0%}" if r is not None else "      -" for r in (s["success_rate"], s["reply_rate"])]
                print(f"{s['campaign'][:30]:30s} {s['sent']:6d} {s['delivered']:6d} {s['read']:6d} {s['replied']:7d} "
                      f"{s['failed']:6d} {s['skipped']:7d} {s['pending']:7d} {s['advanced_after_touch']:8d} "
                      f"{rates[0]} {rates[1]}")
    except (CampaignError, ValueError) as exc:
        print(f"leadflow {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _agent_run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from leadflow.agent.broker_llms import BrokerLLMs
    from leadflow.agent.notify import Notifier
    from leadflow.agent.stream import LeadAgent
    from leadflow.credentials import StoredCredentials
    from leadflow.outbound.senders import TelegramSender, WhatsAppSender
    from leadflow.qualification import batcher

    settings = export_environment()
    stored = StoredCredentials.from_settings(settings)
    agent = LeadAgent(settings, {"telegram": TelegramSender(credentials=stored),
                                 "whatsapp": WhatsAppSender(credentials=stored)},
                      notifier=Notifier(credentials=stored), llm=BrokerLLMs(), member=args.member, members=args.of)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if settings.agent_qualifier_process:
        batcher.shared().in_worker_process()
    try:
        stats = agent.run(stop)
    finally:
        batcher.shared().close()
    print(f"agent stopped: {stats.records} records read, {stats.bursts} bursts, replies {dict(stats.replies)}, "
          f"decisions {dict(stats.decisions)}, {stats.errors} errors")
    return 0


def _agent_status() -> int:
    from leadflow.agent.replies import status_counts
    from leadflow.db.connection import transaction

    settings = load_settings()
    with transaction(settings.database_url) as conn, conn.cursor() as cur:
        counts = status_counts(cur)
        cur.execute("""SELECT b.slug, r.reply_id, r.channel, r.contact_key, r.decided_at FROM leadflow.agent_replies r
                       JOIN leadflow.brokers b USING (broker_id) WHERE r.status = 'sending'
                         AND r.decided_at < now() - interval '1 minute' ORDER BY r.reply_id""")
        unknown = cur.fetchall()
        cur.execute("SELECT status, count(*) FROM leadflow.person_replies GROUP BY status ORDER BY status")
        person_counts = {status: int(n) for status, n in cur.fetchall()}
        cur.execute("""SELECT b.slug, r.reply_id, r.channel, r.lead_id, u.email, r.updated_at
                       FROM leadflow.person_replies r JOIN leadflow.brokers b USING (broker_id)
                       JOIN leadflow.users u USING (user_id)
                       WHERE r.status = 'sending' AND r.updated_at < now() - interval '1 minute'
                       ORDER BY r.reply_id""")
        person_unknown = cur.fetchall()
    print("replies: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    for slug, reply_id, channel, contact, at in unknown:
        # A crash while the provider was being called: whether the lead got it is unknown, so it is not resent.
        print(f"unknown fate: {slug} reply {reply_id} to {channel}:{contact} (sending since {at:%Y-%m-%d %H:%M})")
    print("person replies: " + (", ".join(f"{k} {v}" for k, v in person_counts.items()) or "none"))
    for slug, reply_id, channel, lead_id, email, at in person_unknown:
        # The same window for a person's reply from the workspace: the page shows it as sending; say so here too.
        print(f"unknown fate: {slug} person reply {reply_id} by {email} to lead {lead_id} on {channel} "
              f"(sending since {at:%Y-%m-%d %H:%M})")
    return 0


def _agent(args: argparse.Namespace) -> int:
    from leadflow.agent.store import AgentError, history, release, save_agent_settings, take_over

    if args.action == "run":
        return _agent_run(args)
    if args.action == "status":
        return _agent_status()
    settings = load_settings()
    try:
        if args.action == "settings":
            config = save_agent_settings(settings.database_url, args.broker, _json_argument(args.settings))
            print(f"agent settings of {args.broker} saved: {'on' if config.enabled else 'off'}, {config.policy} "
                  f"policy, {config.language}")
        elif args.action in ("take-over", "release"):
            switch = (take_over if args.action == "take-over" else release)(
                settings.database_url, args.broker, args.lead, args.by, args.reason or args.action)
            print(f"lead {switch.lead_id}: answered by the {switch.handler} now ({switch.user_email}: {switch.reason})")
        else:
            for s in history(settings.database_url, args.broker, args.lead):
                print(f"{s.switched_at:%Y-%m-%d %H:%M} {s.handler:6s} {s.user_email or 'bot'}: {s.reason}")
    except AgentError as exc:
        print(f"leadflow agent {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def print_funnels(funnels: dict[str, list[dict[str, Any]]]) -> None:
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value:.1%}"

    for slug, stages in funnels.items():
        print(f"\nfunnel of {slug} (every channel, source and campaign; dbt mart fct_funnel_daily)")
        print(f"{'stage':26s} {'entered':>8s} {'of entries':>11s} {'advanced':>9s} {'to next':>8s} {'won':>5s} "
              f"{'stalled':>8s}")
        for s in stages:
            print(f"{s['stage_name']:26s} {s['leads_entered']:8d} {pct(s['share_of_entries']):>11s} "
                  f"{s['leads_advanced']:9d} {pct(s['conversion_to_next']):>8s} {s['leads_won']:5d} "
                  f"{s['leads_stalled']:8d}")


def _demo(args: argparse.Namespace) -> int:
    from leadflow.demo.run import run_demo
    from leadflow.services import manager

    manager.up()
    settings = export_environment()
    result = run_demo(settings, contacts_per_broker=args.contacts, seed=args.seed)
    print()
    print(f"{'broker':26s} {'channel':18s} {'messages':>9s} {'contacts':>9s}")
    for broker, channel, messages, contacts in result["rows"]:
        print(f"{broker:26s} {channel:18s} {messages:9d} {'' if contacts is None else contacts:>9}")
    print(f"\n{'broker':26s} {'leads':>6s} {'2+ channels':>12s} {'hot':>5s} {'warm':>5s} {'cold':>5s} "
          f"{'w/ operation':>13s} {'w/ budget':>10s} {'avg score':>10s}")
    for slug, leads, multi, hot, warm, cold, with_op, with_budget, avg_score in result["leads"]:
        print(f"{slug:26s} {leads:6d} {multi:12d} {hot:5d} {warm:5d} {cold:5d} {with_op:13d} {with_budget:10d} "
              f"{avg_score!s:>10s}")
    print_funnels(result["funnels"])
    print("\nexplore: make up (dashboard, reports API, Dagster UI)   ·   stop services: leadflow services down")
    return 0


def _up(args: argparse.Namespace) -> int:
    from leadflow.services import manager
    from leadflow.stack import Ports, run_stack

    # Embedded services this command starts, it stops; ones already running (make demo) stay up.
    started = not manager.embedded_running()
    manager.up()
    try:
        settings = export_environment()
        return run_stack(settings, Ports.from_settings(settings), contacts_per_broker=args.contacts)
    finally:
        if started:
            manager.down()


def build_parser() -> argparse.ArgumentParser:
    configured = Settings.from_environment()
    parser = argparse.ArgumentParser(prog="leadflow", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("services", help="start, stop or inspect the embedded PostgreSQL and Kafka")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=_services)

    p = sub.add_parser("db", help="migrate the schema (Alembic)")
    p.add_argument("action", choices=["upgrade", "downgrade"])
    p.add_argument("--revision")
    p.set_defaults(func=_db)

    p = sub.add_parser("brokers", help="register and list brokers (tenants)")
    brokers = p.add_subparsers(dest="action", required=True)
    add = brokers.add_parser("add", help="register a broker or update it")
    add.add_argument("slug")
    add.add_argument("--name", required=True)
    add.add_argument("--country", required=True, help="ISO 3166 code: CL, MX, AR, ES, US …")
    add.add_argument("--timezone", required=True, help="IANA name, e.g. America/Santiago")
    add.add_argument("--secret-env", action="append", metavar="KIND=VAR",
                     help="read secret KIND (e.g. telegram_secret_token) from $VAR instead of the default name")
    brokers.add_parser("list")
    p.set_defaults(func=_brokers)

    p = sub.add_parser("credentials", help="channel credentials stored encrypted: a new master key, key rotation, "
                       "moving secrets from the environment into the database")
    creds = p.add_subparsers(dest="action", required=True)
    creds.add_parser("new-key", help="print a new master key (for LEADFLOW_MASTER_KEY)")
    creds.add_parser("rotate", help="re-seal every stored credential under LEADFLOW_MASTER_KEY (the old key in "
                     "LEADFLOW_MASTER_KEYS_PREVIOUS until it has run)")
    imp = creds.add_parser("import-env", help="store the channel secrets brokers have in environment variables "
                           "(LEADFLOW_<SLUG>_<KIND>) and not yet in the database")
    imp.add_argument("--broker", action="append", help="only this broker's (repeatable)")
    p.set_defaults(func=_credentials)

    p = sub.add_parser("ingest-api", help="serve the channel webhooks")
    p.add_argument("--host", default=configured.ingest_host)
    p.add_argument("--port", type=int, default=configured.ingest_port)
    p.add_argument("--access-log", action="store_true")
    p.set_defaults(func=_ingest_api)

    p = sub.add_parser("reports-api", help="serve the brokers' reports API and funnel dashboard")
    p.add_argument("--host", default=configured.reports_host)
    p.add_argument("--port", type=int, default=configured.reports_port)
    p.add_argument("--access-log", action="store_true")
    p.set_defaults(func=_reports_api)

    p = sub.add_parser("users", help="accounts of the reports API (SUPERADMIN, ADMIN, AGENT)")
    users = p.add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="create a user, or reset its password, role and broker")
    add.add_argument("email")
    add.add_argument("--role", required=True, choices=["SUPERADMIN", "ADMIN", "AGENT"])
    add.add_argument("--broker", help="the broker's slug (not for SUPERADMIN)")
    add.add_argument("--name", help="display name (default: the email's local part)")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--password-env", metavar="VAR", help="read the password from $VAR (default: prompt)")
    secret.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    assign = users.add_parser("assign", help="assign leads to an AGENT (the leads an agent can see)")
    assign.add_argument("email")
    assign.add_argument("lead_ids", type=int, nargs="+")
    users.add_parser("list")
    for action, text in (("disable", "stop a user from logging in; its sessions end at once"),
                         ("enable", "let a disabled user log in again (with a new login)"),
                         ("remove", "remove a user for good (kept as a disabled record; `add` brings it back)")):
        users.add_parser(action, help=text).add_argument("email")
    set_role_ = users.add_parser("set-role", help="change a user's role (and with --broker, its broker); its "
                                                  "sessions end at once")
    set_role_.add_argument("email")
    set_role_.add_argument("--role", required=True, choices=["SUPERADMIN", "ADMIN", "AGENT"])
    set_role_.add_argument("--broker", help="move to this broker (slug); default: stay in the current one")
    p.set_defaults(func=_users)

    p = sub.add_parser("land", help="land what waits in Kafka into PostgreSQL, outside Dagster")
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument("--max-batches", type=int)
    p.add_argument("--follow", action="store_true",
                   help="keep landing as records arrive, until SIGTERM or Ctrl-C (several such processes share "
                        "the partitions)")
    p.set_defaults(func=_land)

    p = sub.add_parser("dispatch", help="send every due outbound send once, outside Dagster (several such processes "
                                        "share the work)")
    p.add_argument("--max-sends", type=int, default=5000, help="at most this many sends in this run")
    p.set_defaults(func=_dispatch)

    p = sub.add_parser("tick", help="evaluate the landing sensor once and run what it requests")
    p.add_argument("--drain", action="store_true", help="tick until nothing is left to land")
    p.set_defaults(func=_tick)

    p = sub.add_parser("dagster", help="the Dagster CLI with Leadflow's environment, e.g. `leadflow dagster dev "
                                       "-w workspace.yaml`")
    p.add_argument("dagster_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_dagster)

    p = sub.add_parser("qualify", help="qualify and score conversations from a JSONL file (offline rules)")
    p.add_argument("--input", required=True, help="JSONL file of {id, messages: [{role, text}]}, or - for stdin")
    p.add_argument("--output", help="write JSON lines here instead of stdout")
    p.add_argument("--provider", choices=["rules", "anthropic", "openai", "gemini"], default="rules",
                   help="qualifier; an LLM needs LEADFLOW_<PROVIDER>_API_KEY and falls back to the rules on failure")
    p.add_argument("--model", help="the provider's model (default: LEADFLOW_<PROVIDER>_MODEL or a built-in choice)")
    p.add_argument("--country", help="the broker's country (CL, MX, AR, ES, US): phone numbers, places, pesos")
    p.set_defaults(func=_qualify)

    p = sub.add_parser("leads", help="inspect and undo identity merges; keep two leads apart")
    leads = p.add_subparsers(dest="action", required=True)
    merges = leads.add_parser("merges", help="list merges (what each moved, and whether it was undone)")
    merges.add_argument("--broker", help="only this broker's (slug)")
    undo = leads.add_parser("unmerge", help="undo a merge; the two leads are never merged again")
    undo.add_argument("merge_id", type=int)
    apart = leads.add_parser("keep-apart", help="never merge these two leads")
    apart.add_argument("lead_a", type=int)
    apart.add_argument("lead_b", type=int)
    apart.add_argument("--reason", default="kept apart by an operator")
    p.set_defaults(func=_leads)

    p = sub.add_parser("segments", help="save a broker's segment (rules as JSON)")
    p.add_argument("action", choices=["save"])
    p.add_argument("--broker", required=True, help="the broker's slug")
    p.add_argument("--name", required=True)
    p.add_argument("--rules", required=True, help='JSON ({"all": [{"field", "op", "value"}, …]}) or @file')
    p.set_defaults(func=_campaigns)

    p = sub.add_parser("campaigns", help="save a broker's campaign; show every campaign's figures")
    campaigns = p.add_subparsers(dest="action", required=True)
    save = campaigns.add_parser("save", help="create or replace a campaign (trigger and steps as JSON)")
    save.add_argument("--broker", required=True, help="the broker's slug")
    save.add_argument("--name", required=True)
    save.add_argument("--definition", required=True, help='JSON ({"trigger": …, "steps": […]}) or @file')
    save.add_argument("--status", choices=["draft", "active", "paused", "completed"], default="draft")
    campaigns.add_parser("stats", help="sent, delivered, read, replied, failed per campaign")
    p.set_defaults(func=_campaigns)

    p = sub.add_parser("calendar", help="Google Calendar of appointments: run the sync once")
    cal = p.add_subparsers(dest="action", required=True)
    once = cal.add_parser("sync", help="write pending appointments to Google Calendar and read busy times back, once "
                                       "(what appointment_calendar_job does every 10 minutes)")
    once.add_argument("--broker", help="only this broker (slug)")
    p.set_defaults(func=_calendar)

    p = sub.add_parser("agent", help="the lead agent: run it; a broker's settings; a person takes a lead over or "
                                     "gives it back")
    agent = p.add_subparsers(dest="action", required=True)
    run = agent.add_parser("run", help="answer every inbound chat of brokers whose agent is on, until Ctrl-C")
    run.add_argument("--member", type=int, help="this process's index when several share the topic "
                                                "(default LEADFLOW_AGENT_MEMBER)")
    run.add_argument("--of", type=int, help="how many processes share it (default LEADFLOW_AGENT_MEMBERS)")
    agent.add_parser("status", help="replies per status, and replies whose fate a crash left unknown")
    configure = agent.add_parser("settings", help="validate and save a broker's agent settings")
    configure.add_argument("--broker", required=True, help="the broker's slug")
    configure.add_argument("--settings", required=True, help='JSON ({"enabled": true, "persona_name": …}) or @file')
    for action, text in (("take-over", "a person answers the lead from now on: the bot stops at once"),
                         ("release", "the person gives the lead back to the bot"),
                         ("history", "every switch of a lead between the bot and people")):
        switch = agent.add_parser(action, help=text)
        switch.add_argument("--broker", required=True, help="the broker's slug")
        switch.add_argument("--lead", type=int, required=True)
        if action != "history":
            switch.add_argument("--by", required=True, help="the email of the person (a user of the broker)")
            switch.add_argument("--reason", help="why (recorded with the switch)")
    p.set_defaults(func=_agent)

    p = sub.add_parser("up", help="run the whole local stack on the demo data until Ctrl-C (make up)")
    p.add_argument("--contacts", type=int, default=300, help="contacts per demo broker, when the demo data is new")
    p.set_defaults(func=_up)

    p = sub.add_parser("demo", help="run the backbone end to end on a generated stream")
    p.add_argument("--contacts", type=int, default=300, help="contacts per demo broker")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)  # the defaults read the settings, which may be invalid
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        code: int = args.func(args)
        return code
    except ConfigurationError as exc:
        print(f"leadflow: {exc}", file=sys.stderr)
        return 2
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        # PostgreSQL went away mid-command (a restart, a failover, a killed backend). Every write here
        # commits its rows with its offsets or its state in one transaction: nothing half-done stays.
        said = str(exc).strip().splitlines()
        print(f"leadflow: PostgreSQL stopped answering during the command ({said[0] if said else type(exc).__name__})."
              " What was committed is kept and nothing half-done was; run it again once PostgreSQL answers"
              " (LEADFLOW_DATABASE_URL).", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
