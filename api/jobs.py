"""Job state and manual triggers of the reduction blocks."""
OPENAPI_PATHS: dict = {}
