SELECT night, model_name, model_version, feature, psi FROM vigil_audit.drift WHERE night >= :first;
