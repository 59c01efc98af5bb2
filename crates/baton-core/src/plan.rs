//! The rollout planner: a pure function from (deployment, observed instances, now) to actions.
