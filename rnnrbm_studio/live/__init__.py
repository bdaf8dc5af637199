"""Live playback: the player, its clock, MIDI ports and the sender process."""
