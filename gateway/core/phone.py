"""Party normalisation: phone numbers to E.164 with `phonenumbers`; other addresses (SIP
URIs, Twilio `client:` identities, WhatsApp ids) kept in a canonical text form. Either way
the result is sealed and blind-indexed, never stored or logged in the clear.

Invariant: an error message never contains the input; it says what form is expected (the
+country form) and which setting reads national numbers ([privacy] default_region)."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

# Longest party string accepted (SIP URIs can be long; 256 is well above any real one).
MAX_PARTY_LENGTH = 256
_URI_SCHEMES = ("sip:", "sips:", "client:", "tel:")


class PartyError(ValueError):
    pass


# Parsing a number costs ~50 us and the same few numbers recur in every event of a call
# and across a tenant's calls; a small cache keeps them off the ingest hot path. It holds
# nothing that is not already in this process's memory while events are handled.
@lru_cache(maxsize=4096)
def normalise_party(raw: str, default_region: str = "") -> str:
    """E.164 for anything that parses as a phone number, else a canonical URI form.
    Raises PartyError for empty or oversized input (the message never echoes the value)."""
    text = raw.strip()
    if not text or len(text) > MAX_PARTY_LENGTH:
        raise PartyError("party must be 1-256 characters")
    lowered = text.lower()
    if lowered.startswith("tel:"):
        text = text[4:]
    elif lowered.startswith(_URI_SCHEMES):
        return lowered
    # WhatsApp writes numbers as bare digits with the country code and no '+'.
    digits = "".join(ch for ch in text if ch.isdigit())
    candidates = [text]
    if not text.startswith("+") and not text.startswith("00") and len(digits) >= 8:
        candidates.append("+" + digits)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, default_region or None)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise PartyError(unreadable_number_message(text, default_region))


def unreadable_number_message(text: str, default_region: str = "") -> str:
    """What to fix when `text` is not a number or address: the +country form, and the
    setting that lets national numbers through. Never contains `text` itself."""
    national = not text.startswith(("+", "00")) and any(ch.isdigit() for ch in text)
    if national and not default_region:
        return ("not a phone number or address: a number without its +country code can only"
                " be read when the operator sets [privacy] default_region (e.g. \"GB\");"
                " write it as +<country code><number>, e.g. +44 20 7946 0958")
    region = (f"; numbers without a +country code are read as {default_region}"
              " ([privacy] default_region)") if default_region else ""
    return ("not a phone number or address: write it as +<country code><number>, e.g."
            " +44 20 7946 0958, or as a sip:/tel: URI" + region)


def try_normalise_party(raw: str | None, default_region: str = "") -> str | None:
    """Like normalise_party, but keeps an address it cannot parse as lower-case text: a
    platform's odd party value should not make the whole delivery fail."""
    if raw is None or not raw.strip():
        return None
    try:
        return normalise_party(raw, default_region)
    except PartyError:
        return raw.strip()[:MAX_PARTY_LENGTH].lower()
