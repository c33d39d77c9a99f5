"""Example workflows, served by default (``--workflows examples:WORKFLOWS``)."""

from engine import Workflow

from .approval import ApprovalWorkflow
from .echo import EchoWorkflow
from .flaky import FlakyWorkflow
from .research import ResearchWorkflow
from .ticker import TickerWorkflow

WORKFLOWS: dict[str, Workflow] = {
    "echo": EchoWorkflow(),
    "research": ResearchWorkflow(),
    "ticker": TickerWorkflow(),
    "approval": ApprovalWorkflow(),
    "flaky": FlakyWorkflow(),
}

__all__ = [
    "WORKFLOWS",
    "ApprovalWorkflow",
    "EchoWorkflow",
    "FlakyWorkflow",
    "ResearchWorkflow",
    "TickerWorkflow",
]
