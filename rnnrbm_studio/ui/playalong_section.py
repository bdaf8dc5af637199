"""The window's side of playing along: the Play along box (ui/panels/playalong.py) wired to a MIDI
input, the player's play-along settings, MIDI learn and a DAW's clock.

One input is open at a time, from the moment it is chosen (so knobs work, and a pad can start the
music, while nothing plays) until another is chosen, No input, or the window closes; the player
listens to it through an InputRelay (ui/midi_inputs.py). Everything the input says arrives on the
input's thread and reaches the window by queued signals: no widget is touched from that thread.
Controllers move the window's own widgets (the temperature box...), which then set the player as a
click would. An input that vanishes is said in one line on the status bar; the player, if playing,
stops itself (it probes its inputs) with every note released.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import replace

from PySide6 import QtCore, QtWidgets

from ..errors import StudioError
from ..live.cc_map import CcMap, CcMapError, CcListener
from ..live.clock import MonotonicClock
from ..live.midi_clock import ClockFollower
from .midi_inputs import InputProvider, InputRelay, SystemInputProvider
from .panels.playalong import PARAMETER_LABELS, PlayAlongPanel
from .playback_section import PlaybackSection

log = logging.getLogger(__name__)

WATCH_INTERVAL_MS = 500  # how often an input is checked while nothing plays (the player checks it while playing)
KEY = "playalong/"


class PlayAlongSection(QtCore.QObject):
    # from the input's thread to the GUI thread (queued: this object lives on the GUI thread)
    _controller_heard = QtCore.Signal(int)  # a controller moved while learning
    _knob_moved = QtCore.Signal(object)  # a CcChange
    _clock_tempo = QtCore.Signal(float)
    _clock_transport = QtCore.Signal(str)

    def __init__(self, panel: PlayAlongPanel, playback: PlaybackSection, settings: QtCore.QSettings,
                 window: QtWidgets.QMainWindow, provider: InputProvider | None = None):
        super().__init__(window)
        self.panel, self.playback, self.live = panel, playback, playback.live
        self.settings, self.window = settings, window
        self.provider = provider or SystemInputProvider()
        self.relay = InputRelay()
        self.live.listen_to(self.relay)  # every player the window makes hears the chosen input
        self.input_label = ""  # the chosen input as listed, while open
        self.learning: str | None = None  # the parameter waiting for a controller
        self.cc_map = self._stored_map()
        self.knobs = CcListener(self.cc_map, self._knob_moved.emit, on_learn=self._heard_controller)
        self.relay.add_listener(self.knobs.message)
        self.clock = ClockFollower(on_tempo=self._clock_tempo.emit, on_transport=self._clock_transport.emit)
        self._clock_bpm: float | None = None

        self._controller_heard.connect(self._learn_controller)
        self._knob_moved.connect(self._apply_knob)
        self._clock_tempo.connect(self._follow_tempo)
        self._clock_transport.connect(self._follow_transport)
        panel.input_chosen.connect(self.choose_input)
        panel.refresh_requested.connect(self.refresh_inputs)
        panel.settings_changed.connect(self._settings_changed)
        panel.follow_clock_toggled.connect(self._follow_clock)
        panel.learn_requested.connect(self.learn)
        panel.forget_requested.connect(self.forget)
        playback.panel.settings_changed.connect(self._apply_clock_tempo)  # after the section's own handler
        self.live.playing_changed.connect(self._playing_changed)
        self.live.error.connect(self._player_error)
        self._install_context_menus()
        self.watch_timer = QtCore.QTimer(self)
        self.watch_timer.setInterval(WATCH_INTERVAL_MS)
        self.watch_timer.timeout.connect(self._watch_input)

        self._restore()
        panel.set_bindings(self.cc_map_bindings())
        self.refresh_inputs()

    # ---------------------------------------------------------------------------- inputs
    def refresh_inputs(self) -> None:
        """List the inputs again; the remembered one is opened if it is there and nothing is open."""
        try:
            names, problem = self.provider.names(), ""
        except StudioError as error:
            names, problem = [], str(error)
        wanted = self.input_label or str(self.settings.value(KEY + "input", "") or "")
        self.panel.set_inputs(names, wanted, problem)
        if wanted in names and not self.input_label:
            self.choose_input(wanted)

    def choose_input(self, name: str) -> None:
        """Listen to the input `name` ("" for none); the one before is closed (its keys released)."""
        if name == self.input_label and self.relay.input is not None:
            return
        self._close_input()
        self.settings.setValue(KEY + "input", name)
        if not name:
            return
        try:
            opened = self.provider.open(name)
        except StudioError as error:
            self.panel.set_inputs(self._listed(), "")
            self._say(str(error))
            return
        self.relay.attach(opened)
        self.input_label = name
        self.panel.set_inputs(self._listed(), name)
        self.watch_timer.start()
        self.window.statusBar().showMessage(f"Listening to {name}", 5000)

    def _listed(self) -> list[str]:
        return [self.panel.input.itemText(i) for i in range(1, self.panel.input.count())]

    def _close_input(self) -> None:
        self.watch_timer.stop()
        opened = self.relay.detach()
        self.input_label = ""
        player = self.live.player
        if player is not None:  # keys down on the input that goes are up for the model
            player.folder.release_all(MonotonicClock().now())
        if opened is not None:
            try:
                opened.close()
            except Exception as error:  # an input that vanished may fail to close; it is gone either way
                log.info("closing the MIDI input failed: %s", error)

    def _watch_input(self) -> None:
        if self.live.is_playing():
            return  # the player asks the input itself, and stops with the reason
        problem = self.relay.problem()
        if problem:
            self._input_lost(problem)

    def _player_error(self, message: str) -> None:
        if self.relay.lost and self.relay.input is not None:  # the player stopped for the input: said already
            self._input_lost(None)

    def _input_lost(self, message: str | None) -> None:
        self._close_input()
        self.panel.set_inputs(self._listed(), "")
        if message:
            self._say(message)

    def shutdown(self) -> None:
        """On close, after the player has stopped: the input closed."""
        self.learning = None
        self._close_input()

    # ------------------------------------------------------------------------------ mode
    def _settings_changed(self) -> None:
        along = self.panel.playalong_settings()
        for key, value in (("mode", along.mode), ("split", self.panel.split.value()),
                           ("max_notes", self.panel.max_notes.value()), ("answer_after", along.answer_after_beats),
                           ("answer_bars", self.panel.answer_bars.value())):
            self.settings.setValue(KEY + key, value)
        self.live.set_playalong(along)

    def _restore(self) -> None:
        panel, value = self.panel, self.settings.value
        try:  # all read before any is set: setting one saves them all
            split, notes = int(value(KEY + "split", 0)), int(value(KEY + "max_notes", 0))
            after, bars = float(value(KEY + "answer_after", 2.0)), int(value(KEY + "answer_bars", 0))
            mode, clock = str(value(KEY + "mode", "solo")), str(value(KEY + "follow_clock", "false")).lower()
            panel.split.setValue(split)
            panel.max_notes.setValue(notes)
            panel.answer_after.setValue(after)
            panel.answer_bars.setValue(bars)
            panel.set_mode(mode)
            panel.follow_clock.setChecked(clock == "true")
        except (TypeError, ValueError):  # a hand-edited or old settings file: the defaults
            log.info("ignoring unreadable play-along settings")
        self.live.set_playalong(panel.playalong_settings())

    # ------------------------------------------------------------------------- MIDI learn
    def _stored_map(self) -> CcMap:
        text = str(self.settings.value(KEY + "knobs", "") or "")
        try:
            return CcMap.parse([text])
        except CcMapError as error:
            log.info("ignoring the stored knobs %r: %s", text, error)
            return CcMap()

    def cc_map_bindings(self) -> dict[str, int]:
        return {parameter: controller for controller, parameter in self.cc_map.bindings.items()}

    def learn(self, parameter: str) -> None:
        """The next controller moved on the input moves `parameter` (asked again: no longer waits)."""
        self.learning = None if self.learning == parameter else parameter
        self.panel.set_bindings(self.cc_map_bindings(), self.learning)
        if self.learning and self.relay.input is None:
            self._say("Choose a MIDI input to learn from (Play along)")

    def forget(self, parameter: str) -> None:
        """No controller for `parameter` any more ("" for all)."""
        self._set_map(self.cc_map.without(parameter) if parameter else CcMap())

    def _heard_controller(self, controller: int) -> None:  # on the input's thread
        if self.learning is not None:
            self._controller_heard.emit(controller)

    def _learn_controller(self, controller: int) -> None:
        parameter, self.learning = self.learning, None
        if parameter is None:
            return  # a second controller queued behind the one learned
        self._set_map(self.cc_map.with_binding(controller, parameter))
        self.window.statusBar().showMessage(f"Controller {controller} moves {PARAMETER_LABELS[parameter]}", 5000)

    def _set_map(self, cc_map: CcMap) -> None:
        self.cc_map = self.knobs.cc_map = cc_map  # the listener takes the new map at its next message
        self.settings.setValue(KEY + "knobs", cc_map.format())
        self.panel.set_bindings(self.cc_map_bindings(), self.learning)

    def _apply_knob(self, change) -> None:
        """A knob moved: its widget moves, and the player follows the widget as it would a click."""
        if change.parameter == "play":
            self.playback.toggle_play()
        elif change.parameter == "mode":
            self.panel.set_mode(change.value)
        else:
            self._targets()[change.parameter].setValue(change.value)

    def _targets(self) -> dict[str, QtWidgets.QWidget]:
        live = self.playback.panel
        return {"temperature": live.temperature, "bpm": live.bpm, "gibbs_steps": live.gibbs_steps,
                "play": live.play_button, "mode": self.panel.mode}

    def _install_context_menus(self) -> None:
        for parameter, widget in self._targets().items():
            widget.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.CustomContextMenu)
            widget.customContextMenuRequested.connect(functools.partial(self._show_context_menu, parameter, widget))

    def _show_context_menu(self, parameter: str, widget: QtWidgets.QWidget, position: QtCore.QPoint) -> None:
        self.context_menu(parameter, widget).exec(widget.mapToGlobal(position))

    def context_menu(self, parameter: str, parent: QtWidgets.QWidget | None = None) -> QtWidgets.QMenu:
        """Right-click on a parameter's control: learn its controller, or forget it."""
        menu = QtWidgets.QMenu(parent)
        label = PARAMETER_LABELS[parameter]
        menu.addAction(f"MIDI learn {label}…", functools.partial(self.learn, parameter))
        controller = self.cc_map.controller_of(parameter)
        if controller is not None:
            menu.addAction(f"Forget controller {controller}", functools.partial(self.forget, parameter))
        return menu

    # ------------------------------------------------------------------------ MIDI clock
    def _follow_clock(self, on: bool) -> None:
        self.settings.setValue(KEY + "follow_clock", on)
        self.relay.remove_listener(self.clock.message)
        self._clock_bpm = None
        if on:
            self.relay.add_listener(self.clock.message)

    def _follow_tempo(self, bpm: float) -> None:
        box = self.playback.panel.bpm
        self._clock_bpm = min(max(bpm, box.minimum()), box.maximum())
        box.setValue(self._clock_bpm)  # shown rounded; played exactly (_apply_clock_tempo)
        self._apply_clock_tempo()

    def _apply_clock_tempo(self) -> None:
        if self._clock_bpm is None or not self.panel.follow_clock.isChecked():
            return
        settings, bpm = self.live.settings, round(self._clock_bpm, 2)
        if settings.bpm != bpm:
            self.live.update(replace(settings, bpm=bpm))
            self.playback.piano_roll.set_seconds_per_frame(self.live.seconds_per_step())

    def _follow_transport(self, word: str) -> None:
        """A DAW's Start plays from the top, Stop stops (every note released), Continue plays on."""
        playing = self.live.is_playing()
        if word == "stop":
            if playing:
                self.playback.toggle_play()
            return
        if word == "start":
            self.live.reset_state()
        if not playing:
            self.playback.toggle_play()

    def _playing_changed(self, playing: bool) -> None:
        if playing:
            self._apply_clock_tempo()

    def _say(self, message: str) -> None:
        log.warning("%s", message)
        self.window.statusBar().showMessage(message, 10000)
