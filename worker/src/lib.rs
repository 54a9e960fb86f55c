//! The worker replica: apalis wiring around the core's delivery engine, and the maintenance
//! leader (queue gauges, history counts, retention).

pub mod maintenance;
pub mod runtime;
