//! Simulated healthy and broken canaries run through the judge, with a seeded generator.
