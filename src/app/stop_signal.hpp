// SIGINT/SIGTERM handling for long runs: the first signal asks the step loop to stop cleanly after
// the current step (final checkpoint, summary with status "interrupted"); a second one ends the
// process at once, as users expect from a second Ctrl-C.
#pragma once

namespace pdegen::app {

void install_stop_handlers();
// The signal number that asked for a stop, 0 if none.
int stop_requested();

}  // namespace pdegen::app
