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

    @property
    def cell_id(self) -> str:
        return f"{self.index:04d}"

    def games_seed(self, seed: int) -> int:
        """The games of a cell depend on the seed, family, its parameters and sizes only."""
        desc = json.dumps([seed, self.family, list(self.family_params), self.K, self.Y, self.A], default=str)
        return int(hashlib.sha256(desc.encode()).hexdigest()[:8], 16)

    def describe(self) -> dict:
        out = {"study": self.study_name, "game": self.game, "family": self.family, "K": self.K, "Y": self.Y, "A": self.A}
        out.update({f"family.{k}": v for k, v in self.family_params})
        out.update({f"game.{k}": v for k, v in self.game_params})
        return out


def expand_cells(cfg: dict) -> list[Cell]:
    """The grid of cells, in a fixed order (study, K, Y, A, family params, game params)."""
    cells = []
    for s, st in enumerate(cfg["study"]):
        fkeys = sorted(st["family_params"])
        gkeys = sorted(st["game_params"])
        solver = tuple(sorted(st["solver"].items()))
        for K, Y, A in itertools.product(st["K"], st["Y"], st["A"]):
            for fvals in itertools.product(*(st["family_params"][k] for k in fkeys)):
                for gvals in itertools.product(*(st["game_params"][k] for k in gkeys)):
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
                        )
                    )
    return cells
