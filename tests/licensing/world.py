"""The licensing tests' institution: an institute with two licensing officers and key custodians,
three applicant companies, a tiny random Llama registered at SL3 and put in the licensed tier."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from aperture.access.domain import (
    SYSTEM,
    Caller,
    Organisation,
    OrganisationKind,
    PrincipalKind,
    Role,
    RuleOfLaw,
    SecurityLevel,
    State,
    StateKind,
    Vetting,
)
from aperture.bootstrap import Services
from aperture.registry.domain import ModelVersion
from aperture.release.domain import Tier
from aperture.testing.release import put_tier

MODEL = "tiny-licensed"
VERSION = "1.0"
REFERENCE = f"{MODEL}:{VERSION}"

PEOPLE: dict[str, tuple[str, tuple[Role, ...]]] = {
    "olive": ("institute", (Role.LICENSING_OFFICER,)),
    "oscar": ("institute", (Role.LICENSING_OFFICER,)),
    "alan": ("acme", (Role.LICENSEE,)),
    "bea": ("beta", (Role.LICENSEE,)),
    "gus": ("gamma", (Role.LICENSEE,)),
    "otto": ("acme", (Role.LICENSING_OFFICER,)),  # an officer inside an applicant: must not decide for it
    "carol": ("institute", (Role.KEY_CUSTODIAN,)),
    "dave": ("institute", (Role.KEY_CUSTODIAN,)),
}


class SteppingClock:
    """The system clock, which a test can move forward to expire tokens and licences."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


def tiny_llama_weights(
    seed: int = 7, layers: int = 2, hidden: int = 64, ffn: int = 128, vocab: int = 96
) -> dict[str, np.ndarray]:
    """Llama-shaped random weights (Hugging Face names), row scales log-normal like real models."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": (rng.standard_normal((vocab, hidden)) * 0.02).astype(np.float32)
    }
    shapes = {
        "self_attn.q_proj": (hidden, hidden),
        "self_attn.k_proj": (hidden // 2, hidden),
        "self_attn.v_proj": (hidden // 2, hidden),
        "self_attn.o_proj": (hidden, hidden),
        "mlp.gate_proj": (ffn, hidden),
        "mlp.up_proj": (ffn, hidden),
        "mlp.down_proj": (hidden, ffn),
    }
    for layer in range(layers):
        for part, shape in shapes.items():
            scale = 0.02 * np.exp(rng.standard_normal((shape[0], 1)) * 0.3)
            weights[f"model.layers.{layer}.{part}.weight"] = (rng.standard_normal(shape) * scale).astype(np.float32)
        weights[f"model.layers.{layer}.input_layernorm.weight"] = np.ones(hidden, np.float32)
        weights[f"model.layers.{layer}.post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
    weights["model.norm.weight"] = np.ones(hidden, np.float32)
    return weights


def write_tiny_model(root: Path, weights: dict[str, np.ndarray] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    weights = weights if weights is not None else tiny_llama_weights()
    save_file(weights, str(root / "model.safetensors"))
    (root / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64})
    )
    return root


@dataclass
class World:
    services: Services
    clock: SteppingClock
    shares: dict[str, str]
    version: ModelVersion

    def caller(self, name: str) -> Caller:
        principal = self.services.access.get_principal(name)
        return Caller(principal=name, roles=principal.roles, key_id="ab12cd34", origin="192.0.2.9")

    def unseal(self) -> None:
        for name in ("carol", "dave"):
            self.services.security.present_share(self.caller(name), self.shares[name])


def build_world(services: Services, tmp_path: Path, clock: SteppingClock, *, seal: bool = True) -> World:
    access = services.access
    access.save_state(SYSTEM, State("FR", "France", StateKind.MEMBER, True, SecurityLevel.SL4, RuleOfLaw.ADEQUATE))
    for name, title in (("institute", "The Institute"), ("acme", "Acme AI"), ("beta", "Beta Labs"), ("gamma", "Gamma")):
        kind = OrganisationKind.PUBLIC_BODY if name == "institute" else OrganisationKind.COMPANY
        access.save_organisation(SYSTEM, Organisation(name, title, kind, "FR"))
    access.add_programme(SYSTEM, "frontier", "Frontier models")
    for name, (organisation, roles) in PEOPLE.items():
        access.add_principal(
            SYSTEM,
            name,
            kind=PrincipalKind.PERSON,
            organisation=organisation,
            clearance=SecurityLevel.SL4,
            vetting=Vetting.ENHANCED,
            roles=roles,
            programmes=("frontier",),
        )
    shares = dict(services.security.init_seal(SYSTEM, ["carol", "dave"], 2)) if seal else {}
    version = services.registry.register(
        SYSTEM,
        write_tiny_model(tmp_path / "tiny-source"),
        MODEL,
        VERSION,
        level=SecurityLevel.SL3 if seal else SecurityLevel.SL1,
        programme="frontier" if seal else None,
        training_flop="1e20",  # a small model: the release policy can weigh it (diffusion tests)
    ).version
    put_tier(services, MODEL, VERSION, Tier.LICENSED)
    return World(services, clock, shares, version)


BOARD = ("ada", "ben", "cy")


def seat_the_board(world: World) -> None:
    """A programme director and three board members, for diffusions the board must decide."""
    people = {"dora": Role.PROGRAMME_DIRECTOR} | dict.fromkeys(BOARD, Role.RELEASE_BOARD_MEMBER)
    for name, role in people.items():
        world.services.access.add_principal(
            SYSTEM,
            name,
            kind=PrincipalKind.PERSON,
            organisation="institute",
            clearance=SecurityLevel.SL4,
            vetting=Vetting.ENHANCED,
            roles=(role,),
            programmes=("frontier",),
        )


def board_decides(world: World, tier: Tier, votes: int) -> dict[str, object]:
    """dora proposes `tier` for the tiny model and the first `votes` members approve it."""
    release = world.services.release
    proposal = release.propose(world.caller("dora"), REFERENCE, tier, f"end of programme: {tier.value}")
    for member in BOARD[:votes]:
        proposal = release.vote(world.caller(member), str(proposal["id"]), True, "the programme has ended")
    return proposal
