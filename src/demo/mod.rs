//! Local PostgreSQL and Redis for the demo.
