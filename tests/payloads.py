"""Provider payloads as the providers document them, for one lead writing in Spanish."""

from __future__ import annotations

from typing import Any


def telegram_text(update_id: int = 9001,
                  text: str = "Hola, busco depto 2d2b en Ñuñoa hasta 5.200 UF") -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": 44, "date": 1764100000, "text": text,
        "from": {"id": 123456789, "is_bot": False, "first_name": "Camila", "last_name": "Rojas"},
        "chat": {"id": 123456789, "type": "private"}}}


def telegram_voice(update_id: int = 9002) -> dict[str, Any]:
    return {"update_id": update_id, "message": {
        "message_id": 45, "date": 1764100060,
        "voice": {"file_id": "AwACAgEAAxkBAAIB", "duration": 7, "mime_type": "audio/ogg"},
        "from": {"id": 123456789, "is_bot": False, "first_name": "Camila"},
        "chat": {"id": 123456789, "type": "private"}}}


def whatsapp_text(message_id: str = "wamid.HBgLNTY5ODc2NTQzMjEVAgASGBQzQTk") -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Matías Soto"}, "wa_id": "56987654321"}],
            "messages": [{"from": "56987654321", "id": message_id, "timestamp": "1764100000", "type": "text",
                          "text": {"body": "Tengo crédito preaprobado, busco casa en La Reina"}}]}}]}]}


def whatsapp_status(message_id: str = "wamid.OUTBOUND1", status: str = "delivered") -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"},
            "statuses": [{"id": message_id, "status": status, "timestamp": "1764100100",
                          "recipient_id": "56987654321"}]}}]}]}


def vapi_end_of_call(call_id: str = "c0ffee00-0000-4000-8000-000000000001",
                     sent_at_ms: int | None = None) -> dict[str, Any]:
    """``sent_at_ms``: VAPI's ``message.timestamp`` (when it sent the report), left out by default."""
    report: dict[str, Any] = {"message": {
        "type": "end-of-call-report", "endedReason": "customer-ended-call",
        "startedAt": "2026-11-20T15:00:00.000Z", "endedAt": "2026-11-20T15:03:10.000Z",
        "call": {"id": call_id, "type": "inboundPhoneCall", "customer": {"number": "+56 9 8765 4321"}},
        "artifact": {"messages": [
            {"role": "system", "message": "You are a real-estate assistant.", "time": 1763650800000},
            {"role": "bot", "message": "Hola, habla Sofía de Providencia Propiedades.", "time": 1763650801000},
            {"role": "user", "message": "Hola, quiero arrendar un depto de tres dormitorios en Providencia.",
             "time": 1763650805000},
            {"role": "bot", "message": "¿Cuál es su presupuesto?", "time": 1763650809000},
            {"role": "user", "message": "Hasta quinientas cincuenta lucas.", "time": 1763650812000}]}}}
    if sent_at_ms is not None:
        report["message"]["timestamp"] = sent_at_ms
    return report


def vapi_long_call(minutes: int, call_id: str = "c0ffee00-0000-4000-8000-00000000long") -> dict[str, Any]:
    """An end-of-call report of a long call, shaped like VAPI's: the transcript rides five times (structured
    turns in ``artifact.messages`` and ``messages``, OpenAI-formatted turns, the flat transcript twice),
    a turn every 6 s of about 15 words."""
    start_ms = 1763650800000
    lines = ["Me interesa un departamento de tres dormitorios en Providencia, cerca del metro, con estacionamiento.",
             "Perfecto. ¿Cuál es su presupuesto aproximado y cómo piensa financiar la compra del departamento?"]
    turns = [{"role": "user" if i % 2 == 0 else "bot", "message": lines[i % 2], "time": start_ms + 6000 * i,
              "endTime": start_ms + 6000 * i + 5200, "secondsFromStart": 6 * i, "duration": 5200}
             for i in range(minutes * 10)]
    transcript = "\n".join(f"{'User' if t['role'] == 'user' else 'AI'}: {t['message']}" for t in turns)
    openai = [{"role": "user" if t["role"] == "user" else "assistant", "content": t["message"]} for t in turns]
    return {"message": {
        "type": "end-of-call-report", "endedReason": "customer-ended-call",
        "startedAt": "2026-11-20T15:00:00.000Z", "endedAt": "2026-11-20T16:00:00.000Z",
        "call": {"id": call_id, "type": "inboundPhoneCall", "customer": {"number": "+56 9 8765 4321"}},
        "summary": "Lead buscando depto de tres dormitorios en Providencia.", "transcript": transcript,
        "messages": turns,
        "artifact": {"messages": turns, "messagesOpenAIFormatted": openai, "transcript": transcript}}}


def bland_call(call_id: str = "bland-call-0001") -> dict[str, Any]:
    return {"call_id": call_id, "inbound": True, "from": "+5215512345678", "to": "+15550002222",
            "created_at": "2026-11-20T16:00:00Z", "completed": True, "variables": {"name": "Ximena López"},
            "transcripts": [
                {"id": 1, "user": "assistant", "text": "Hello, this is Polanco Realty.",
                 "created_at": "2026-11-20T16:00:01Z"},
                {"id": 2, "user": "user", "text": "Hi, I want to buy an apartment in Polanco, USD 180k.",
                 "created_at": "2026-11-20T16:00:06Z"},
                {"id": 3, "user": "agent-action", "text": "Pressed 1", "created_at": "2026-11-20T16:00:07Z"}]}


def vapi_report_with_message_customer(call_id: str = "c0ffee00-0000-4000-8000-0000000000c1",
                                      number: str = "+56987654321") -> dict[str, Any]:
    """An end-of-call report as VAPI's server-message schema has it: the caller in ``message.customer``,
    the call object without its own customer copy."""
    return {"message": {
        "type": "end-of-call-report", "endedReason": "customer-ended-call",
        "startedAt": "2026-11-20T15:00:00.000Z", "endedAt": "2026-11-20T15:01:00.000Z",
        "phoneNumber": {"number": "+15550001111"},
        "customer": {"number": number, "name": "Camila Rojas"},
        "call": {"id": call_id, "type": "inboundPhoneCall", "phoneNumberId": "pn-1"},
        "artifact": {"messages": [
            {"role": "bot", "message": "Hola, habla Sofía de Providencia Propiedades.", "time": 1763650801000},
            {"role": "user", "message": "Busco depto de dos dormitorios en Ñuñoa.", "time": 1763650805000}]}}}


def bland_documented_call(call_id: str = "d9cce3f3-23cf-4fa7-b62c-8be8119b8715", *, inbound: bool,
                          lead: str = "+14155550100", short: bool = False) -> dict[str, Any]:
    """A call as Bland's call-details docs show it: ``short`` writes the lead's top-level number national,
    without its country code (as Bland's docs do for ``to``); ``variables`` repeats both ends with a plus."""
    ours = "+15550002222"
    caller, callee = (lead, ours) if inbound else (ours, lead)
    digits = lead.removeprefix("+1")
    return {"call_id": call_id, "c_id": call_id, "call_length": 0.75, "batch_id": None,
            "to": digits if short and not inbound else callee, "from": digits if short and inbound else caller,
            "completed": True, "created_at": "2026-11-20T16:00:00.025251+00:00", "inbound": inbound,
            "queue_status": "completed", "endpoint_url": "api.prod.bland.ai", "max_duration": 30,
            "error_message": None, "answered_by": "human", "started_at": "2026-11-20T16:00:05+00:00",
            "variables": {"now_utc": "Fri, 20 Nov 2026 16:00:05 GMT", "from": caller, "to": callee,
                          "short_from": caller.removeprefix("+1"), "short_to": callee.removeprefix("+1"),
                          "call_id": call_id, "phone_number": lead, "country": "US", "state": "CA"},
            "concatenated_transcript": "user: Hello?\n assistant: Hi, this is Polanco Realty.",
            "transcripts": [
                {"id": 1, "created_at": "2026-11-20T16:00:06+00:00", "text": "Hello?", "user": "user"},
                {"id": 2, "created_at": "2026-11-20T16:00:08+00:00", "text": "Hi, this is Polanco Realty.",
                 "user": "assistant"}]}


def form_lead(submission_id: str | None = "portal-0001") -> dict[str, Any]:
    lead = {"name": "Javiera Muñoz", "phone": "987654321", "email": "Javiera.Munoz@Gmail.com",
            "message": "Me interesa el depto de Vitacura", "source": "portalinmobiliario",
            "submitted_at": "2026-11-20T12:00:00-03:00"}
    if submission_id:
        lead["submission_id"] = submission_id
    return lead


# An authentic delivery that is not what the provider documents, per channel.
MALFORMED: dict[str, dict[str, Any]] = {
    "telegram": {"message": {"text": "no update_id"}},
    "whatsapp": {"object": "whatsapp_business_account", "entry": "not-a-list"},
    "vapi": {"message": {"type": "end-of-call-report", "call": {"id": "x"}}},
    "bland": {"call_id": "b-1", "created_at": "2026-11-20T16:00:00Z"},
    "form": {"name": "No contact at all"},
}

VALID: dict[str, Any] = {
    "telegram": telegram_text,
    "whatsapp": whatsapp_text,
    "vapi": vapi_end_of_call,
    "bland": bland_call,
    "form": form_lead,
}

# How many canonical messages each valid payload above becomes.
EXPECTED_MESSAGES = {"telegram": 1, "whatsapp": 1, "vapi": 4, "bland": 2, "form": 1}
