"""The grid of cells a config expands to: one cell per study, size and parameter
combination, in a fixed order; a cell's games depend only on the seed, the family,
its parameters and the sizes."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json

__all__ = ["Cell", "expand_cells"]


@dataclasses.dataclass(frozen=True)
class Cell:
    index: int
    study: int
    study_name: str
    game: str
    family: str
    K: int
    Y: int
    A: int
    family_params: tuple
    game_params: tuple
    solver: tuple
    # the population dimension (population studies only): N users, the kind of play,
    # the near-alignment loss and the anonymous solver's options
    users: int | None = None
    play: str | None = None
    loss: float | None = None
    anonymous_solver: tuple = ()

    @property
    def population(self) -> bool:
        """Whether the cell's games are populations (a study with a population table)."""
        return self.users is not None

    @property
    def cell_id(self) -> str:
        return f"{self.index:04d}"

    def games_seed(self, seed: int) -> int:
        """The games of a cell depend on the seed, family, its parameters and sizes (and the
        number of users) only: personalized and anonymous cells play the same populations."""
        sizes = [self.K, self.Y, self.A] + ([self.users] if self.population else [])  # not the kind of play:
        desc = json.dumps([seed, self.family, list(self.family_params), *sizes], default=str)  # paired populations
        return int(hashlib.sha256(desc.encode()).hexdigest()[:8], 16)

    def describe(self) -> dict:
        out = {"study": self.study_name, "game": self.game, "family": self.family, "K": self.K, "Y": self.Y, "A": self.A}
        out.update({f"family.{k}": v for k, v in self.family_params})
        out.update({f"game.{k}": v for k, v in self.game_params})
        if self.population:
            out.update({"population.users": self.users, "population.mode": self.play, "population.loss": self.loss})
        return out


def expand_cells(cfg: dict) -> list[Cell]:
    """The grid of cells, in a fixed order (study, K, Y, A, family params, game params,
    then a population study's users and kinds of play)."""
    cells = []
    for s, st in enumerate(cfg["study"]):
        fkeys = sorted(st["family_params"])
        gkeys = sorted(st["game_params"])
        solver = tuple(sorted(st["solver"].items()))
        pop = st.get("population")
        plays = [(None, None)] if pop is None else list(itertools.product(pop["users"], pop["mode"]))
        extra = {} if pop is None else {"loss": pop["loss"], "anonymous_solver": tuple(sorted(pop["solver"].items()))}
        for K, Y, A in itertools.product(st["K"], st["Y"], st["A"]):
            for fvals in itertools.product(*(st["family_params"][k] for k in fkeys)):
                for gvals in itertools.product(*(st["game_params"][k] for k in gkeys)):
                    for users, play in plays:
                        cells.append(
                            Cell(
                                index=len(cells),
                                study=s,
                                study_name=st["name"],
                                game=st["game"],
                                family=st["family"],
                                K=K,
                                Y=Y,
                                A=A,
                                family_params=tuple(zip(fkeys, fvals)),
                                game_params=tuple(zip(gkeys, gvals)),
                                solver=solver,
                                users=users,
                                play=play,
                                **extra,
                            )
                        )
    return cells
