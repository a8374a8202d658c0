"""The incident domain: candidates from the sources fused into the incidents staff act on, and
their lifecycle (versions, staff changes, timers)."""
