"""Music as data: piano-rolls, MIDI files (read safely, within bounds), corpora and their cache."""
