"""Live counts: rooms and their counts, coalescing, the Socket.IO events, delivery to sockets."""
