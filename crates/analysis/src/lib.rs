//! xlvlm-analysis
