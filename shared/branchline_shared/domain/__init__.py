"""Rules more than one service applies, written once: pure functions and values, no I/O."""
