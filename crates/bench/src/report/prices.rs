//! AWS list prices (us-east-1, on-demand). Stated, dated, and used by the cost sections only.

pub const AS_OF: &str = "us-east-1 on-demand list prices as published by AWS in 2024–2025 \
    (DynamoDB on-demand after the 1 November 2024 reduction), the free tier ignored; not \
    re-checked at run time";
/// Lambda arm64 duration, per GB-second (first 7.5 billion GB-s per month).
pub const LAMBDA_ARM_GB_S: f64 = 0.000_013_333_4;
/// Lambda requests, per million.
pub const LAMBDA_REQUESTS_M: f64 = 0.20;
/// API Gateway HTTP API requests, per million (first 300 million per month, up to 512 KB each).
pub const HTTP_API_M: f64 = 1.00;
/// DynamoDB on-demand write request units, per million.
pub const DDB_WRU_M: f64 = 0.625;
/// DynamoDB on-demand read request units, per million.
pub const DDB_RRU_M: f64 = 0.125;
/// CloudWatch Logs ingestion (standard class), per GB.
pub const CW_LOGS_GB: f64 = 0.50;
/// CloudWatch custom metrics, per metric and month (first 10,000), prorated by the hour.
pub const CW_METRIC_MONTH: f64 = 0.30;
/// Hours in AWS's billing month.
pub const HOURS_PER_MONTH: f64 = 730.0;
