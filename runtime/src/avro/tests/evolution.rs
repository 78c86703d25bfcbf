//! Evolution.
