"""Scene sampling: image conditions and a depth-ordered list of things to paint.

Pure layout — no pixels. A simple ground-plane camera model gives perspective:
something standing at row ``y`` has a pixel height proportional to ``y - horizon``,
so far-away (small) people sit near the horizon and near ones at the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PERSON_KINDS = ("pedestrian", "cyclist")

CAMERAS = ("front", "rear", "side")
TIMES = ("day", "dusk", "night")
WEATHERS = ("clear", "rain")
SCENES = ("street", "plaza")

# Pixel height of a standing person per pixel of (feet row - horizon row).
PERSPECTIVE = 1.15

# Street-furniture height as a multiple of a person's height at the same depth.
PROP_HEIGHT = {"pole": 2.6, "bin": 0.55, "planter": 0.4, "bollard": 0.5}


@dataclass(frozen=True)
class Conditions:
    """Per-image capture conditions (also written to metadata.json)."""

    camera: str
    time_of_day: str
    weather: str
    scene: str


@dataclass
class Thing:
    """Anything painted into the image: a person, a cyclist or an occluder.

    ``ground_y`` is the row where it touches the ground (its depth key);
    ``x`` the horizontal centre; ``height`` its full (amodal) pixel height.
    """

    kind: str
    x: float
    ground_y: float
    height: float
    params: dict = field(default_factory=dict)

    @property
    def is_person(self) -> bool:
        return self.kind in PERSON_KINDS


@dataclass
class Scene:
    """A sampled image layout; ``things`` are sorted far-to-near (paint order)."""

    width: int
    height: int
    horizon: int
    base_y: int  # row where the building facades meet the ground
    road: tuple[int, int] | None  # (top, bottom) rows of the road band, street only
    conditions: Conditions
    things: list[Thing]


def _pick(rng: np.random.Generator, options: tuple[str, ...], p: list[float]) -> str:
    return options[int(rng.choice(len(options), p=p))]


def sample_conditions(rng: np.random.Generator) -> Conditions:
    """Draw camera / time / weather / scene with fixed, skewed priors."""
    return Conditions(
        camera=_pick(rng, CAMERAS, [0.5, 0.3, 0.2]),
        time_of_day=_pick(rng, TIMES, [0.6, 0.25, 0.15]),
        weather=_pick(rng, WEATHERS, [0.75, 0.25]),
        scene=_pick(rng, SCENES, [0.7, 0.3]),
    )


def person_height(ground_y: float, horizon: int, scale: float) -> float:
    """Pixel height of a person standing at ``ground_y`` (perspective model)."""
    return PERSPECTIVE * scale * max(ground_y - horizon, 1.0)


def _colour(rng: np.random.Generator, lo: int = 20, hi: int = 235) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))


_SKIN = np.array([[255, 219, 172], [241, 194, 125], [224, 172, 105], [198, 134, 66],
                  [141, 85, 36], [94, 60, 35]])
_HAIR = np.array([[20, 15, 10], [60, 40, 20], [110, 80, 40], [200, 170, 110], [150, 150, 150]])
_CAR = np.array([[180, 20, 25], [30, 60, 150], [220, 220, 225], [25, 25, 28], [120, 125, 130],
                 [200, 170, 40], [40, 110, 60]])


def _person_params(rng: np.random.Generator, kind: str) -> dict:
    """Appearance and pose of a person (or cyclist rider)."""
    return {
        "facing": int(rng.choice([-1, 1])),
        "phase": float(rng.uniform(-1.0, 1.0)),  # leg spread / walking phase
        "swing": float(rng.uniform(-1.0, 1.0)),  # arm swing
        "build": float(rng.uniform(0.85, 1.2)),
        "coat": bool(rng.random() < 0.3),
        "bag": bool(rng.random() < 0.25),
        "hat": bool(rng.random() < (0.6 if kind == "cyclist" else 0.15)),  # helmet for cyclists
        "skin": tuple(int(v) for v in _SKIN[rng.integers(len(_SKIN))]),
        "hair": tuple(int(v) for v in _HAIR[rng.integers(len(_HAIR))]),
        "shirt": _colour(rng),
        "pants": _colour(rng, 15, 140),
        "shoes": _colour(rng, 5, 90),
        "accent": _colour(rng),  # bag / hat / helmet
        "frame": _colour(rng, 30, 230),  # bicycle frame
    }


def _occluders(rng: np.random.Generator, scene: str, W: int, H: int, horizon: int,
               base_y: int, road: tuple[int, int] | None) -> list[Thing]:
    """Cars, poles and bins (street) or planters and bollards (plaza)."""
    out: list[Thing] = []
    if scene == "street" and road is not None:
        for _ in range(int(rng.choice([0, 1, 1, 2]))):
            gy = float(rng.uniform(road[0] + 0.45 * (road[1] - road[0]), road[1]))
            h = 0.72 * person_height(gy, horizon, 1.0)
            out.append(Thing("car", float(rng.uniform(0.0, W)), gy, h, {
                "body": tuple(int(v) for v in _CAR[rng.integers(len(_CAR))]),
                "facing": int(rng.choice([-1, 1]))}))
        kinds = [("pole", 0.8), ("pole", 0.4), ("bin", 0.35)]
    else:
        kinds = [("planter", 0.6), ("planter", 0.3), ("pole", 0.4), ("bollard", 0.4)]
    for kind, p in kinds:
        if rng.random() < p:
            gy = float(rng.uniform(base_y + 0.15 * (H - base_y), H * 1.02))
            per = person_height(gy, horizon, 1.0)
            h = PROP_HEIGHT[kind] * per
            out.append(Thing(kind, float(rng.uniform(0.05 * W, 0.95 * W)), gy, h,
                             {"colour": _colour(rng, 40, 160), "green": _colour(rng, 20, 120)}))
    return out


def _n_people(rng: np.random.Generator) -> int:
    """0 people (8%), a crowd of 5–10 (22%) or 1–4."""
    u = rng.random()
    if u < 0.08:
        return 0
    if u < 0.30:
        return int(rng.integers(5, 11))
    return int(rng.integers(1, 5))


def _people(rng: np.random.Generator, n: int, scene: str, W: int, H: int, horizon: int,
            base_y: int, road: tuple[int, int] | None, occluders: list[Thing]) -> list[Thing]:
    """Place ``n`` people; some deliberately just behind an occluder."""
    out: list[Thing] = []
    p_cyclist = 0.14 if scene == "street" else 0.06
    near = H * 1.1  # feet may fall below the bottom edge (truncated foreground people)
    min_y = horizon + 14.0 / PERSPECTIVE  # keep everyone >= ~14 px tall
    lo = max(base_y + 2.0, min_y)
    for _ in range(n):
        kind = "cyclist" if rng.random() < p_cyclist else "pedestrian"
        scale = float(rng.uniform(0.85, 1.08))
        behind = [o for o in occluders if o.kind != "pole" or rng.random() < 0.5]
        if behind and rng.random() < 0.35:
            occ = behind[int(rng.integers(len(behind)))]
            gy = max(occ.ground_y - float(rng.uniform(2.0, 0.12 * occ.height + 3.0)), lo)
            span = 1.2 * occ.height if occ.kind == "car" else 0.3 * occ.height / PROP_HEIGHT[occ.kind]
            x = occ.x + float(rng.uniform(-span, span))
        elif kind == "cyclist" and road is not None:
            gy = float(rng.uniform(road[0], road[1]))
            x = float(rng.uniform(0.0, W))
        else:
            gy = lo + (near - lo) * float(rng.random()) ** 0.9
            x = float(rng.uniform(0.02 * W, 0.98 * W))
        h = person_height(gy, horizon, scale * (0.95 if kind == "cyclist" else 1.0))
        out.append(Thing(kind, x, gy, h, _person_params(rng, kind)))
    return out


def sample_scene(rng: np.random.Generator, n_people: int | None = None) -> Scene:
    """Sample one image layout: size, conditions, occluders and people (``n_people`` fixes how many
    people are placed instead of drawing it; the unlabeled pool uses it to plant crowds)."""
    W = int(rng.integers(320, 481))
    H = int(rng.integers(240, 401))
    cond = sample_conditions(rng)
    hfrac = {"front": 0.38, "rear": 0.45, "side": 0.34}[cond.camera]
    horizon = int(H * (hfrac + float(rng.uniform(-0.04, 0.04))))
    base_y = horizon + int(0.04 * H)
    road = None
    if cond.scene == "street":
        top = base_y + int(float(rng.uniform(0.08, 0.14)) * H)
        road = (top, top + int(float(rng.uniform(0.22, 0.32)) * H))
    occ = _occluders(rng, cond.scene, W, H, horizon, base_y, road)
    people = _people(rng, _n_people(rng) if n_people is None else n_people, cond.scene, W, H, horizon, base_y, road, occ)
    things = sorted(occ + people, key=lambda t: t.ground_y)  # stable: far first
    return Scene(W, H, horizon, base_y, road, cond, things)
