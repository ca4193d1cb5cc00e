//! xlvlm-metrics
