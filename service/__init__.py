"""The gRPC host of the workflow engine (workflow.v1.WorkflowService)."""

from .server import WorkflowServer, main

__all__ = ["WorkflowServer", "main"]
