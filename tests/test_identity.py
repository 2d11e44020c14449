"""Identity resolution and conversation assembly, pure (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from leadflow.leads.conversations import assemble, median_reply_minutes
from leadflow.leads.identity import LINK_SCHEMA, resolve

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def messages(*rows: tuple[int, int, str, str | None, str | None, str | None]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"broker_id": pl.Int64, "message_id": pl.Int64, "channel": pl.String,
                                      "contact_channel_id": pl.String, "contact_phone": pl.String,
                                      "contact_email": pl.String}, orient="row")


def lead_of(resolution_frame: pl.DataFrame, message_id: int) -> int:
    return int(resolution_frame.filter(pl.col("message_id") == message_id)["lead_id"][0])


NO_LINKS = pl.DataFrame(schema=LINK_SCHEMA)


def test_same_phone_on_whatsapp_and_a_call_is_one_lead() -> None:
    r = resolve(messages((1, 1, "whatsapp", "56987654321", "+56987654321", None),
                         (1, 2, "vapi", "+56987654321", "+56987654321", None)), NO_LINKS, 1)
    assert lead_of(r.message_leads, 1) == lead_of(r.message_leads, 2)


def test_same_phone_at_two_brokers_is_two_leads() -> None:
    r = resolve(messages((1, 1, "whatsapp", "56987654321", "+56987654321", None),
                         (2, 2, "whatsapp", "56987654321", "+56987654321", None)), NO_LINKS, 1)
    assert lead_of(r.message_leads, 1) != lead_of(r.message_leads, 2)


def test_unrelated_people_stay_apart_and_email_links_a_form_to_a_chat() -> None:
    r = resolve(messages((1, 1, "telegram", "111", None, None),
                         (1, 2, "telegram", "222", None, None),
                         (1, 3, "form", "ana@x.cl", None, "ana@x.cl"),
                         (1, 4, "form", "+56911111111", "+56911111111", "Ana@X.cl")), NO_LINKS, 1)
    assert lead_of(r.message_leads, 1) != lead_of(r.message_leads, 2)
    assert lead_of(r.message_leads, 3) == lead_of(r.message_leads, 4)


def test_existing_links_keep_their_ids_and_new_leads_take_the_next_ones() -> None:
    first = resolve(messages((1, 1, "telegram", "111", None, None)), NO_LINKS, 10)
    second = resolve(messages((1, 2, "telegram", "111", None, None), (1, 3, "telegram", "333", None, None)),
                     first.links, first.next_lead_id)
    assert lead_of(second.message_leads, 2) == 10 and lead_of(second.message_leads, 3) == 11
    assert second.merges.is_empty()


def test_a_message_connecting_two_leads_merges_them_and_says_why() -> None:
    first = resolve(messages((1, 1, "whatsapp", "56987654321", "+56987654321", None),
                             (1, 2, "telegram", "777", None, None)), NO_LINKS, 1)
    second = resolve(messages((1, 3, "telegram", "777", "+56987654321", None)), first.links, first.next_lead_id)
    [merge] = second.merges.to_dicts()
    assert (merge["merged_lead_id"], merge["into_lead_id"]) == (2, 1)
    assert "telegram 777" in merge["reason"]
    assert set(second.links["lead_id"].to_list()) == {1}


def test_conversation_is_ordered_across_channels_with_roles_and_a_stable_hash() -> None:
    frame = pl.DataFrame({
        "broker_id": [1, 1, 1], "lead_id": [5, 5, 5], "message_id": [3, 1, 2],
        "channel": ["vapi", "whatsapp", "whatsapp"], "direction": ["inbound", "inbound", "outbound"],
        "body": ["tercero", "primero", "segundo"], "sent_at": [T0 + timedelta(minutes=m) for m in (30, 0, 10)],
    })
    [row] = assemble(frame).to_dicts()
    assert [t["text"] for t in row["turns"]] == ["primero", "segundo", "tercero"]
    assert [t["role"] for t in row["turns"]] == ["lead", "agent", "lead"]
    assert row["channels"] == ["vapi", "whatsapp"] and row["lead_messages"] == 2
    assert assemble(frame.reverse())["conversation_hash"][0] == row["conversation_hash"]
    assert median_reply_minutes(row["turns"]) == 20


def test_leads_kept_apart_are_not_merged_again_by_a_message_naming_both() -> None:
    first = resolve(messages((1, 1, "whatsapp", "56987654321", "+56987654321", None),
                             (1, 2, "telegram", "777", None, None)), NO_LINKS, 1)
    apart = pl.DataFrame({"lead_a": [1], "lead_b": [2]})
    second = resolve(messages((1, 3, "telegram", "777", "+56987654321", None),
                              (1, 4, "telegram", "888", "+56987654321", None)), first.links, first.next_lead_id,
                     apart)
    assert second.merges.is_empty()
    assert lead_of(second.message_leads, 3) == 1  # names both: goes to the older lead, joins nothing
    assert lead_of(second.message_leads, 4) == 1  # a new identity next to one of them still joins it
    assert set(second.links.filter(pl.col("identity_value") == "777")["lead_id"].to_list()) == {2}
