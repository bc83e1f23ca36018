// Hand-written to match migrations/; both backends share it.
diesel::table! {
    meta (name) {
        name -> Text,
        value -> Binary,
    }
}

diesel::table! {
    partitions (name) {
        name -> Text,
        import_key_id -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    credentials (id) {
        id -> Text,
        partition_name -> Text,
        name -> Text,
        roles -> Text,
        secret_hash -> Text,
        failed_logins -> BigInt,
        locked -> Bool,
        created_at -> BigInt,
        kind -> Text,
        expires_at -> Nullable<BigInt>,
        revoked -> Bool,
        cert_sha256 -> Nullable<Text>,
    }
}

diesel::table! {
    keys (id) {
        id -> Text,
        partition_name -> Text,
        label -> Text,
        algorithm -> Text,
        operations -> Text,
        usage_limit -> Nullable<BigInt>,
        usage_count -> BigInt,
        not_before -> Nullable<BigInt>,
        not_after -> Nullable<BigInt>,
        exportable_under_wrap -> Bool,
        trusted -> Bool,
        never_extractable -> Bool,
        local_origin -> Bool,
        state -> Text,
        generation -> BigInt,
        public_key -> Binary,
        sealed -> Nullable<Binary>,
        created_at -> BigInt,
        verify_until -> Nullable<BigInt>,
        key_auth -> Bool,
        version -> BigInt,
        limit_per_version -> Bool,
    }
}

diesel::table! {
    audit_records (seq) {
        seq -> BigInt,
        ts -> BigInt,
        actor -> Text,
        action -> Text,
        partition_name -> Nullable<Text>,
        key_id -> Nullable<Text>,
        use_hi -> Nullable<BigInt>,
        outcome -> Text,
        detail -> Text,
        mac -> Binary,
    }
}

diesel::table! {
    audit_checkpoints (tree_size) {
        tree_size -> BigInt,
        root -> Binary,
        signature -> Binary,
        ts -> BigInt,
    }
}

diesel::table! {
    audit_head (id) {
        id -> BigInt,
        tree_size -> BigInt,
        frontier -> Binary,
    }
}

diesel::table! {
    policies (version) {
        version -> BigInt,
        text -> Text,
        quorum -> Text,
        submitted_by -> Text,
        submitted_at -> BigInt,
        mac -> Binary,
    }
}

diesel::table! {
    quota_counters (name, window_id) {
        name -> Text,
        window_id -> Text,
        used -> BigInt,
    }
}

diesel::table! {
    approvals (id) {
        id -> Text,
        action -> Text,
        partition_name -> Text,
        target -> Text,
        payload -> Text,
        summary -> Text,
        requested_by -> Text,
        requester_name -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        required -> BigInt,
        status -> Text,
        decided_at -> Nullable<BigInt>,
        result -> Nullable<Binary>,
        mac -> Binary,
    }
}

diesel::table! {
    cas (name) {
        name -> Text,
        partition_name -> Text,
        key_label -> Text,
        parent -> Nullable<Text>,
        cert_der -> Binary,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        revocation_reason -> Nullable<BigInt>,
        mac -> Binary,
    }
}

diesel::table! {
    certificates (serial) {
        serial -> Text,
        ca_name -> Text,
        profile -> Text,
        subject -> Text,
        issued_to -> Text,
        not_before -> BigInt,
        not_after -> BigInt,
        der -> Binary,
        issued_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        revocation_reason -> Nullable<BigInt>,
        spki_sha256 -> Nullable<Text>,
    }
}

diesel::table! {
    ca_certificate_counts (ca_name) {
        ca_name -> Text,
        issued -> BigInt,
    }
}

diesel::table! {
    device_serials (ca_name, serial_number) {
        ca_name -> Text,
        serial_number -> Text,
        cert_serial -> Text,
        spki_sha256 -> Text,
        not_after -> BigInt,
    }
}

diesel::table! {
    crls (ca_name) {
        ca_name -> Text,
        number -> BigInt,
        this_update -> BigInt,
        next_update -> BigInt,
        der -> Binary,
    }
}

diesel::table! {
    tlog_entries (idx) {
        idx -> BigInt,
        ts -> BigInt,
        body -> Binary,
    }
}

diesel::table! {
    tlog_nodes (level, idx) {
        level -> BigInt,
        idx -> BigInt,
        hash -> Binary,
    }
}

diesel::table! {
    tlog_head (id) {
        id -> BigInt,
        size -> BigInt,
        frontier -> Binary,
    }
}

diesel::table! {
    tlog_checkpoints (size) {
        size -> BigInt,
        ts -> BigInt,
        note -> Text,
    }
}

diesel::table! {
    console_passwords (credential_id) {
        credential_id -> Text,
        password_hash -> Text,
        set_at -> BigInt,
    }
}

diesel::table! {
    console_totp (credential_id) {
        credential_id -> Text,
        sealed_secret -> Binary,
        enrolled_at -> BigInt,
        last_step -> BigInt,
    }
}

diesel::table! {
    console_sessions (id_hash) {
        id_hash -> Text,
        credential_id -> Text,
        mac -> Text,
        created_at -> BigInt,
        seen_at -> BigInt,
    }
}

diesel::table! {
    console_password_failures (credential_id) {
        credential_id -> Text,
        wrong -> BigInt,
        locked_until -> BigInt,
    }
}

diesel::table! {
    syslog_cursors (collector) {
        collector -> Text,
        next_seq -> BigInt,
        holder -> Text,
        lease_until -> BigInt,
    }
}
