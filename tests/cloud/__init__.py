"""The cloud room: client, event stream, credentials and project state."""
