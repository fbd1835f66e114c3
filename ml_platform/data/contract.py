"""The raw transaction data contract (DESIGN.md, "Raw data contract").

Fraud's columns as constants for the modules that import them (the simulator, the sources,
the fraud-specific engines). They are the fraud declaration (``use_cases/fraud/use_case.yaml``)
spelled out, which a test checks; validation reads the declaration itself. Kept literal so
that importing them stays free of YAML parsing and of the use-case loader.
"""

from __future__ import annotations

TRANSACTION_ID = "transaction_id"
TX_DATETIME = "tx_datetime"
CUSTOMER_ID = "customer_id"
TERMINAL_ID = "terminal_id"
TX_AMOUNT = "tx_amount"
TX_FRAUD = "tx_fraud"

#: Required columns in contract order, with the pandas dtype each is stored as.
RAW_COLUMNS: dict[str, str] = {
    TRANSACTION_ID: "int64",
    TX_DATETIME: "datetime64[ns]",
    CUSTOMER_ID: "int64",
    TERMINAL_ID: "int64",
    TX_AMOUNT: "float64",
    TX_FRAUD: "int8",
}

#: What a client sends for scoring: the contract without the label.
REQUEST_COLUMNS: tuple[str, ...] = (
    TRANSACTION_ID,
    TX_DATETIME,
    CUSTOMER_ID,
    TERMINAL_ID,
    TX_AMOUNT,
)

#: Partition column written by the lake (hive style ``date=YYYY-MM-DD``).
PARTITION_COLUMN = "date"
