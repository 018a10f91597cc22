"""Evaluation building blocks: closed-set metrics (`metrics`), face-verification metrics (`verification`),
model profiling (`profile`: params, MACs, host latency) and the table row (`result.StageResult`)."""

__all__ = ["metrics", "profile", "result", "verification"]
