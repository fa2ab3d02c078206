"""alignjax: equilibria of games in which a user consults several competing AI agents.

The model is that of Collina, Goel, Roth, Ryu and Shi, "Emergent Alignment via
Competition" (arXiv 2509.15090). Games are tensors (:class:`Game`); every solver is
written for one game and batched with ``jax.vmap``.
"""

from alignjax import lp, persuasion, response
from alignjax import alignment, differentiation
from alignjax.differentiation import SmoothedPersuasion, smoothed_persuasion
from alignjax.alignment import (
    AlignmentCurve,
    AlignmentResult,
    AlignmentSolver,
    alignment_curve,
    alignment_error,
)
from alignjax.game import Game, GameSpecError, game_from_dict, game_to_dict, load_game
from alignjax.persuasion import PersuasionResult, PersuasionSolver
from alignjax import selection
from alignjax.selection import SelectionResult, SelectionSolver
from alignjax import simultaneous
from alignjax.simultaneous import SimultaneousResult, SimultaneousSolver
from alignjax import conversation, equilibrium_gradients
from alignjax.equilibrium_gradients import QuantalEquilibrium, quantal_equilibrium_derivatives
from alignjax.conversation import ConversationGame, ConversationResult, ConversationRules, ConversationSolver
from alignjax.response import (
    best_response,
    full_information_value,
    no_information_value,
    posterior,
    quantal_response,
)
from alignjax.status import Status, status_name
from alignjax import games, results
from alignjax.games import GAME_TYPES, GameType
from alignjax.results import AbstractResult, metrics, result_to_dict
from alignjax import population
from alignjax.population import PopulationGame, PopulationResult, load_population

__version__ = "0.1.0"

__all__ = [
    "AbstractResult",
    "GAME_TYPES",
    "GameType",
    "games",
    "metrics",
    "result_to_dict",
    "results",
    "AlignmentCurve",
    "AlignmentResult",
    "AlignmentSolver",
    "alignment",
    "alignment_curve",
    "alignment_error",
    "conversation",
    "differentiation",
    "equilibrium_gradients",
    "QuantalEquilibrium",
    "quantal_equilibrium_derivatives",
    "SmoothedPersuasion",
    "smoothed_persuasion",
    "ConversationGame",
    "ConversationResult",
    "ConversationRules",
    "ConversationSolver",
    "Game",
    "GameSpecError",
    "PersuasionResult",
    "PopulationGame",
    "PopulationResult",
    "PersuasionSolver",
    "SelectionResult",
    "SelectionSolver",
    "Status",
    "best_response",
    "full_information_value",
    "game_from_dict",
    "game_to_dict",
    "load_game",
    "load_population",
    "lp",
    "no_information_value",
    "persuasion",
    "population",
    "selection",
    "posterior",
    "quantal_response",
    "response",
    "simultaneous",
    "SimultaneousResult",
    "SimultaneousSolver",
    "status_name",
]
