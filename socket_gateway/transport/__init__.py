"""Engine.IO transports: the own WebSocket transport, session bounds, admission, malformed frames."""
