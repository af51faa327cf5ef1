"""Development helpers behind `gateway dev ...`: a signed sample delivery for any platform,
so a newcomer sees a call arrive without writing a signer first.

Invariants:
- Signing here is written from the platforms' documented rules (/work/shared/PROTOCOLS.md
  and docs/platforms.md), not by calling the adapters' verifiers: a delivery that passes is
  evidence the two agree, not a tautology. Twilio's `compute_signature` is the one shared
  function (the adapter documents it as the signing helper for local development).
- Nothing here runs in the server; `gateway dev` is an operator's tool on the gateway host.
"""
