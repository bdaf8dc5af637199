"""The control panels of the window: the music (corpus), training (and its plot), and live playback.

Panels only lay out widgets and say what the user asked for through signals; the window and its
controllers decide what happens. They hold no engine state.
"""
