"""The steps of a job, each a plain function: prepare the data, train, evaluate, record the run
(and cross-validate, check gradients, reproduce a logged run)."""
