"""Entry point of the operator process (kopf run); filled in as the handlers land."""
