-- One database per service: each service owns its data (ARCHITECTURE.md).
CREATE DATABASE branchline_intake;
CREATE DATABASE branchline_followup;
CREATE DATABASE branchline_audit;
