"""Identity resolution: one lead per broker and person, across channels.

Every message names identities of its sender: the channel's own user id (Telegram user id,
WhatsApp wa_id, the caller of a VAPI/Bland call, a form's phone or email), an E.164 phone and an
email when known. Identities a message names together belong to one person; people connected
through shared identities are one lead. Nothing is ever linked across brokers.

The link table (identity → lead, with the reason it was linked) is the memory: existing links
keep their lead ids, a new identity joins the lead it connects to, and when a message connects
two existing leads the younger is merged into the older and the merge is recorded with the
identity that caused it — explainable, and reversible: an undone merge keeps the two leads apart
from then on.
Pure: polars frames in, polars frames out.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

MESSAGE_COLUMNS = pl.Schema({"broker_id": pl.Int64, "message_id": pl.Int64, "channel": pl.String,
                             "contact_channel_id": pl.String, "contact_phone": pl.String, "contact_email": pl.String})
LINK_SCHEMA = pl.Schema({"broker_id": pl.Int64, "identity_kind": pl.String, "identity_value": pl.String,
                         "lead_id": pl.Int64, "reason": pl.String})
MERGE_SCHEMA = pl.Schema({"broker_id": pl.Int64, "merged_lead_id": pl.Int64, "into_lead_id": pl.Int64,
                          "reason": pl.String})


@dataclass(frozen=True)
class Resolution:
    links: pl.DataFrame  # every identity seen, with its (possibly new) lead
    message_leads: pl.DataFrame  # broker_id, message_id, lead_id
    merges: pl.DataFrame  # leads merged into another by this resolution
    next_lead_id: int


def identities(messages: pl.DataFrame) -> pl.DataFrame:
    """Long form: one row per (message, identity kind, value)."""
    frame = messages.cast({name: dtype for name, dtype in MESSAGE_COLUMNS.items() if name in messages.columns})
    frame = frame.select(
        "broker_id", "message_id", "channel",
        pl.col("channel").alias("channel_kind"),
        pl.col("contact_channel_id").alias("channel_value"),
        pl.col("contact_phone").alias("phone"),
        pl.col("contact_email").str.to_lowercase().alias("email"),
    )
    parts = [
        frame.select("broker_id", "message_id", "channel", pl.col("channel_kind").alias("identity_kind"),
                     pl.col("channel_value").alias("identity_value")),
        frame.select("broker_id", "message_id", "channel", pl.lit("phone").alias("identity_kind"),
                     pl.col("phone").alias("identity_value")),
        frame.select("broker_id", "message_id", "channel", pl.lit("email").alias("identity_kind"),
                     pl.col("email").alias("identity_value")),
    ]
    return pl.concat(parts).filter(pl.col("identity_value").is_not_null() & (pl.col("identity_value") != ""))


class _UnionFind:
    """Components of identities; a union that would put two leads kept apart together is refused."""

    def __init__(self, apart: set[frozenset[int]]) -> None:
        self.parent: dict[tuple[object, ...], tuple[object, ...]] = {}
        self.leads: dict[tuple[object, ...], set[int]] = {}  # root → the existing leads in its component
        self.apart = apart

    def find(self, node: tuple[object, ...]) -> tuple[object, ...]:
        root = self.parent.setdefault(node, node)
        while root != self.parent[root]:
            root = self.parent[root]
        while node != root:  # path compression
            self.parent[node], node = root, self.parent[node]
        return root

    def add_lead(self, node: tuple[object, ...], lead: int) -> None:
        self.leads.setdefault(self.find(node), set()).add(lead)

    def union(self, a: tuple[object, ...], b: tuple[object, ...]) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        if self.apart:
            left, right = self.leads.get(ra, set()), self.leads.get(rb, set())
            if any(frozenset((x, y)) in self.apart for x in left for y in right):
                return False
        keep, drop = min(ra, rb, key=repr), max(ra, rb, key=repr)
        self.parent[drop] = keep
        if drop in self.leads:
            self.leads.setdefault(keep, set()).update(self.leads.pop(drop))
        return True


def _describe(identities: list[tuple[str, str]]) -> str:
    return ", ".join(f"{kind} {value}" for kind, value in identities[:3])


def resolve(messages: pl.DataFrame, links: pl.DataFrame, next_lead_id: int,
            apart: pl.DataFrame | None = None) -> Resolution:
    """Assign every message to a lead, extending ``links``; new leads get ids from ``next_lead_id``.

    ``apart`` (lead_a, lead_b) names leads a person said are different people (an undone merge):
    a message naming identities of both joins neither to the other, and goes to the older lead.
    """
    ids = identities(messages)
    pairs_apart = {frozenset((int(a), int(b))) for a, b in apart.select("lead_a", "lead_b").iter_rows()} \
        if apart is not None else set()
    uf = _UnionFind(pairs_apart)
    # Existing links: every identity of a lead is joined to that lead's node.
    for broker, kind, value, lead in links.select("broker_id", "identity_kind", "identity_value",
                                                  "lead_id").iter_rows():
        uf.add_lead((broker, "lead", lead), lead)
        uf.union((broker, "lead", lead), (broker, kind, value))
    # A message joins the identities it names; only distinct pairs matter.
    firsts = ids.group_by("broker_id", "message_id").agg(pl.col("identity_kind").first().alias("k0"),
                                                         pl.col("identity_value").first().alias("v0"))
    pairs = ids.join(firsts, on=["broker_id", "message_id"]).select(
        "broker_id", "identity_kind", "identity_value", "k0", "v0").unique()
    for broker, kind, value, k0, v0 in pairs.iter_rows():
        uf.union((broker, k0, v0), (broker, kind, value))

    # Each component's lead: the oldest existing lead in it, or a new one.
    existing = {(b, lead) for b, lead in links.select("broker_id", "lead_id").unique().iter_rows()}
    component_leads: dict[tuple[object, ...], list[int]] = {}
    for broker, lead in existing:
        component_leads.setdefault(uf.find((broker, "lead", lead)), []).append(lead)
    lead_of_root: dict[tuple[object, ...], int] = {}
    merges: list[tuple[int, int, int, str]] = []
    for root, leads in component_leads.items():
        keep = min(leads)
        lead_of_root[root] = keep
        merges.extend((int(str(root[0])), lead, keep, "") for lead in sorted(leads) if lead != keep)

    new_links: list[tuple[int, str, str, int, str]] = []
    # maintain_order: new lead ids follow the order messages arrived in, run after run.
    first_seen = ids.sort("message_id").unique(["broker_id", "identity_kind", "identity_value"], keep="first",
                                               maintain_order=True)
    known = {(b, k, v) for b, k, v in links.select("broker_id", "identity_kind", "identity_value").iter_rows()}
    for broker, message_id, channel, kind, value in first_seen.select(
            "broker_id", "message_id", "channel", "identity_kind", "identity_value").iter_rows():
        root = uf.find((broker, kind, value))
        if root not in lead_of_root:
            lead_of_root[root] = next_lead_id
            next_lead_id += 1
        if (broker, kind, value) not in known:
            new_links.append((broker, kind, value, lead_of_root[root],
                              f"first seen in message {message_id} ({channel})"))

    # Merge reasons name an identity the merged leads share with the kept one.
    if merges:
        by_lead: dict[int, list[tuple[str, str]]] = {}
        for _b, kind, value, lead in links.select("broker_id", "identity_kind", "identity_value",
                                                   "lead_id").iter_rows():
            by_lead.setdefault(lead, []).append((kind, value))
        merges = [(b, merged, keep, f"connected to lead {keep} through a message naming identities of both "
                                    f"(lead {merged} had {_describe(by_lead.get(merged, []))})")
                  for b, merged, keep, _ in merges]

    merges.sort()
    old = links.select("broker_id", "identity_kind", "identity_value", "lead_id", "reason")
    remap = {merged: keep for _b, merged, keep, _r in merges}
    if remap:
        old = old.with_columns(pl.col("lead_id").replace(remap))
    all_links = pl.concat([old.cast(LINK_SCHEMA), pl.DataFrame(new_links, schema=LINK_SCHEMA, orient="row")])

    message_leads = ids.join(all_links, on=["broker_id", "identity_kind", "identity_value"]).group_by(
        "broker_id", "message_id").agg(pl.col("lead_id").min()).sort("broker_id", "message_id")
    return Resolution(all_links, message_leads, pl.DataFrame(merges, schema=MERGE_SCHEMA, orient="row"),
                      next_lead_id)
