//! The TCP engine: a sans-IO state machine (being written).
