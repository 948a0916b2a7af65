-- Parameters: what a job declares (tock.jobs.params), what a trigger supplies, and what a run gets: the values
-- checked here, in one place, whoever triggers (SQL, the CLI, the API, the portal).

-- A parameter's name: a letter, then letters, digits or '_', at most 63; its script sees TOCK_PARAM_<NAME> (upper
-- case), so two names may not differ only in case.
CREATE OR REPLACE FUNCTION tock.is_param_name(p_name text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT p_name ~ '^[A-Za-z][A-Za-z0-9_]{0,62}$'
$$;

-- A value a parameter may hold: at most 4,096 characters, no control characters but tab and newline (a value goes
-- into a script's environment and arguments as it is).
CREATE OR REPLACE FUNCTION tock.check_param_value(p_param text, p_value text)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF length(p_value) > 4096 OR p_value ~ '[\u0001-\u0008\u000b-\u001f\u007f-\u009f]' THEN
        PERFORM tock.raise_invalid('params', format(
            'parameter %s: a value has at most 4,096 characters and no control characters but tab and newline', p_param));
    END IF;
END $$;

-- Whether p_value is one the declaration p_def allows (its choices, its pattern, matched whole).
CREATE OR REPLACE FUNCTION tock.param_value_allowed(p_def jsonb, p_value text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT (NOT p_def ? 'choices' OR p_def -> 'choices' ? p_value)
       AND (NOT p_def ? 'pattern' OR p_value ~ ('^(?:' || (p_def ->> 'pattern') || ')$'))
$$;

-- A job's declarations, checked and put in a canonical form: a JSON array (NULL or [] for none) of at most 32
-- objects {"name", "default"?, "required"?, "choices"?, "pattern"?}. Raises 22023 naming 'params' otherwise.
CREATE OR REPLACE FUNCTION tock.checked_param_defs(p_defs jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_def jsonb;
    v_name text;
    v_names text[] := '{}';
    v_unknown text;
    v_out jsonb := '[]';
    v_clean jsonb;
BEGIN
    IF p_defs IS NULL OR jsonb_typeof(p_defs) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_defs) <> 'array' OR jsonb_array_length(p_defs) > 32 THEN
        PERFORM tock.raise_invalid('params', 'expected an array of at most 32 parameter declarations');
    END IF;
    FOR v_def IN SELECT e FROM jsonb_array_elements(p_defs) e LOOP
        IF jsonb_typeof(v_def) <> 'object' THEN
            PERFORM tock.raise_invalid('params', format('expected an object {"name", "default", "required", "choices", "pattern"}, got %s',
                                                        left(v_def::text, 60)));
        END IF;
        v_name := v_def ->> 'name';
        IF jsonb_typeof(v_def -> 'name') IS DISTINCT FROM 'string' OR NOT tock.is_param_name(v_name) THEN
            PERFORM tock.raise_invalid('params', format(
                '%s is not a parameter name (a letter, then letters, digits or ''_''; at most 63)', left(coalesce(v_def ->> 'name', 'null'), 80)));
        END IF;
        IF upper(v_name) = ANY (v_names) THEN
            PERFORM tock.raise_invalid('params', format('parameter %s is declared twice (names differing only in case count as one)', v_name));
        END IF;
        v_names := v_names || upper(v_name);
        SELECT string_agg(k, ', ' ORDER BY k) INTO v_unknown FROM jsonb_object_keys(v_def) k
        WHERE k NOT IN ('name', 'default', 'required', 'choices', 'pattern');
        IF v_unknown IS NOT NULL THEN
            PERFORM tock.raise_invalid('params', format('parameter %s: unknown field(s) %s; known: name, default, required, choices, pattern',
                                                        v_name, v_unknown));
        END IF;
        v_clean := jsonb_build_object('name', v_name);
        IF v_def ? 'required' AND jsonb_typeof(v_def -> 'required') <> 'null' THEN
            IF jsonb_typeof(v_def -> 'required') <> 'boolean' THEN
                PERFORM tock.raise_invalid('params', format('parameter %s: required is true or false', v_name));
            END IF;
            IF (v_def ->> 'required')::boolean THEN
                v_clean := v_clean || '{"required": true}';
            END IF;
        END IF;
        IF v_def ? 'choices' AND jsonb_typeof(v_def -> 'choices') <> 'null' THEN
            IF jsonb_typeof(v_def -> 'choices') <> 'array' OR jsonb_array_length(v_def -> 'choices') NOT BETWEEN 1 AND 100
               OR EXISTS (SELECT 1 FROM jsonb_array_elements(v_def -> 'choices') c WHERE jsonb_typeof(c) <> 'string') THEN
                PERFORM tock.raise_invalid('params', format('parameter %s: choices is an array of 1 to 100 strings', v_name));
            END IF;
            PERFORM tock.check_param_value(v_name, c) FROM jsonb_array_elements_text(v_def -> 'choices') c;
            v_clean := v_clean || jsonb_build_object('choices', v_def -> 'choices');
        END IF;
        IF v_def ? 'pattern' AND jsonb_typeof(v_def -> 'pattern') <> 'null' THEN
            IF jsonb_typeof(v_def -> 'pattern') <> 'string' OR length(v_def ->> 'pattern') NOT BETWEEN 1 AND 1000 THEN
                PERFORM tock.raise_invalid('params', format('parameter %s: pattern is a regular expression of 1 to 1,000 characters', v_name));
            END IF;
            BEGIN
                PERFORM '' ~ ('^(?:' || (v_def ->> 'pattern') || ')$');
            EXCEPTION WHEN invalid_regular_expression THEN
                PERFORM tock.raise_invalid('params', format('parameter %s: pattern %s is not a regular expression: %s',
                                                            v_name, left(v_def ->> 'pattern', 80), SQLERRM));
            END;
            v_clean := v_clean || jsonb_build_object('pattern', v_def -> 'pattern');
        END IF;
        IF v_def ? 'default' AND jsonb_typeof(v_def -> 'default') <> 'null' THEN
            IF jsonb_typeof(v_def -> 'default') <> 'string' THEN
                PERFORM tock.raise_invalid('params', format('parameter %s: default is a string', v_name));
            END IF;
            PERFORM tock.check_param_value(v_name, v_def ->> 'default');
            IF NOT tock.param_value_allowed(v_clean, v_def ->> 'default') THEN
                PERFORM tock.raise_invalid('params', format('parameter %s: its default %L is not among its choices or does not match its pattern',
                                                            v_name, left(v_def ->> 'default', 80)));
            END IF;
            v_clean := v_clean || jsonb_build_object('default', v_def -> 'default');
        END IF;
        v_out := v_out || jsonb_build_array(v_clean);
    END LOOP;
    RETURN nullif(v_out, '[]');
END $$;

-- The {{name}} placeholders in a job's arguments that name none of its parameters: a typo found when the job is
-- saved, not when a run starts.
CREATE OR REPLACE FUNCTION tock.unknown_placeholders(p_args text[], p_defs jsonb)
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(DISTINCT m[1] ORDER BY m[1]), '{}')
    FROM unnest(p_args) a, regexp_matches(a, '\{\{([A-Za-z][A-Za-z0-9_]{0,62})\}\}', 'g') m
    WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(p_defs, '[]')) d WHERE d ->> 'name' = m[1])
$$;

-- The values a run of a job with declarations p_defs gets from the values p_given a trigger supplied (a JSON object;
-- strings, numbers and true/false are taken as their text): every one declared and allowed, the required ones
-- given, the others filled in from their defaults. NULL when the job declares none and none was given. Raises
-- 22023 naming the parameter otherwise, so nothing is enqueued.
CREATE OR REPLACE FUNCTION tock.resolved_params(p_defs jsonb, p_given jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_key text;
    v_value jsonb;
    v_def jsonb;
    v_text text;
    v_out jsonb := '{}';
BEGIN
    IF p_given IS NOT NULL AND jsonb_typeof(p_given) = 'null' THEN
        p_given := NULL;
    END IF;
    IF p_given IS NOT NULL AND jsonb_typeof(p_given) <> 'object' THEN
        PERFORM tock.raise_invalid('params', 'expected a JSON object of parameter values, {"name": "value"}');
    END IF;
    FOR v_key, v_value IN SELECT * FROM jsonb_each(coalesce(p_given, '{}')) LOOP
        SELECT d INTO v_def FROM jsonb_array_elements(coalesce(p_defs, '[]')) d WHERE d ->> 'name' = v_key;
        IF v_def IS NULL THEN
            PERFORM tock.raise_invalid('params', format('%s is not a parameter of this job; it takes %s', left(v_key, 80),
                coalesce((SELECT string_agg(d ->> 'name', ', ') FROM jsonb_array_elements(p_defs) d), 'none')));
        END IF;
        IF jsonb_typeof(v_value) NOT IN ('string', 'number', 'boolean') THEN
            PERFORM tock.raise_invalid('params', format('parameter %s: expected a string, got %s', v_key, left(v_value::text, 60)));
        END IF;
        v_text := v_value #>> '{}';
        PERFORM tock.check_param_value(v_key, v_text);
        IF NOT tock.param_value_allowed(v_def, v_text) THEN
            PERFORM tock.raise_invalid('params', format('parameter %s: %L is not allowed (%s)', v_key, left(v_text, 80),
                CASE WHEN v_def ? 'choices'
                     THEN 'one of ' || (SELECT string_agg(c, ', ') FROM jsonb_array_elements_text(v_def -> 'choices') c)
                     ELSE 'it must match ' || (v_def ->> 'pattern') END));
        END IF;
        v_out := v_out || jsonb_build_object(v_key, v_text);
    END LOOP;
    FOR v_def IN SELECT d FROM jsonb_array_elements(coalesce(p_defs, '[]')) d LOOP
        CONTINUE WHEN v_out ? (v_def ->> 'name');
        IF v_def ? 'default' THEN
            v_out := v_out || jsonb_build_object(v_def ->> 'name', v_def -> 'default');
        ELSIF coalesce((v_def ->> 'required')::boolean, false) THEN
            PERFORM tock.raise_invalid('params', format('parameter %s is required', v_def ->> 'name'));
        END IF;
    END LOOP;
    RETURN CASE WHEN p_defs IS NULL AND v_out = '{}' THEN NULL ELSE v_out END;
END $$;

-- A job's argument with each {{name}} replaced by that parameter's value, in one pass (a value that holds
-- {{other}} stays as it is). The worker passes arguments to the script as they are, never through a shell.
CREATE OR REPLACE FUNCTION tock.param_arg(p_arg text, p_params jsonb)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_out text := '';
    v_rest text := p_arg;
    v_match text[];
BEGIN
    IF p_params IS NULL OR strpos(p_arg, '{{') = 0 THEN
        RETURN p_arg;
    END IF;
    LOOP
        v_match := regexp_match(v_rest, '\{\{([A-Za-z][A-Za-z0-9_]{0,62})\}\}');
        EXIT WHEN v_match IS NULL;
        v_out := v_out || left(v_rest, strpos(v_rest, '{{' || v_match[1] || '}}') - 1)
                       || coalesce(p_params ->> v_match[1], '');
        v_rest := substr(v_rest, strpos(v_rest, '{{' || v_match[1] || '}}') + length(v_match[1]) + 4);
    END LOOP;
    RETURN v_out || v_rest;
END $$;

-- A run's arguments: the job's, its parameters put in.
CREATE OR REPLACE FUNCTION tock.run_args(p_args text[], p_params jsonb)
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_params IS NULL THEN p_args
                ELSE ARRAY(SELECT tock.param_arg(a, p_params) FROM unnest(p_args) WITH ORDINALITY u(a, n) ORDER BY n) END
$$;

-- The values a run takes when nothing is given (a chained run): each default. Unlike tock.resolved_params it
-- raises nothing, for it runs inside a finish (a job that runs chained has a default for each required parameter:
-- tock.tg_jobs__prepare).
CREATE OR REPLACE FUNCTION tock.param_defaults(p_defs jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_defs IS NOT NULL
                THEN coalesce((SELECT jsonb_object_agg(d ->> 'name', d -> 'default') FROM jsonb_array_elements(p_defs) d
                               WHERE d ? 'default'), '{}') END
$$;

-- The environment a run adds to its script's: TOCK_PARAM_<NAME> for each parameter and, for a chained run,
-- TOCK_UPSTREAM_RUN_ID, TOCK_UPSTREAM_JOB and TOCK_UPSTREAM_STATUS. NULL when it adds nothing.
DROP FUNCTION IF EXISTS tock.run_environment(jsonb);
CREATE OR REPLACE FUNCTION tock.run_environment(p_params jsonb, p_upstream jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT nullif(
        coalesce((SELECT jsonb_object_agg('TOCK_PARAM_' || upper(key), value) FROM jsonb_each(p_params)), '{}')
        || CASE WHEN p_upstream IS NOT NULL
                THEN jsonb_build_object('TOCK_UPSTREAM_RUN_ID', p_upstream ->> 'run_id', 'TOCK_UPSTREAM_JOB', p_upstream ->> 'job',
                                        'TOCK_UPSTREAM_STATUS', p_upstream ->> 'status')
                ELSE '{}' END,
        '{}')
$$;

-- A job's environment and secrets (migration 0024): names of letters, digits and '_' (not starting with a digit, at
-- most 64), none that Tock sets (TOCK_…), and none that changes what a program loads or runs: whoever may edit a job
-- chooses its variables, and must not get to run code of their own as the worker's user (PERL5OPT, NODE_OPTIONS,
-- PYTHONSTARTUP, LD_PRELOAD, BASH_ENV, a proxy that reroutes the script's requests, a CA bundle that trusts theirs).
-- Any case: a program may read either. The worker keeps the same list (Worker.isJobVariable). Values as a
-- parameter's.
CREATE OR REPLACE FUNCTION tock.is_env_name(p_name text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT p_name ~ '^[A-Za-z_][A-Za-z0-9_]{0,63}$'
       AND upper(p_name) !~ '^(TOCK_|LD_|DYLD_|PERL|PYTHON|NODE_|RUBY|JAVA_|_JAVA_|JDK_|GIT_|OPENSSL_|GLIBC_|GCONV_|MALLOC_|BASH_FUNC_)'
       AND upper(p_name) !~ '_PROXY$'
       AND upper(p_name) NOT IN ('PATH', 'HOME', 'IFS', 'ENV', 'BASH_ENV', 'SHELLOPTS', 'BASHOPTS', 'PS4', 'PROMPT_COMMAND',
                                 'CDPATH', 'GLOBIGNORE', 'SHELL', 'USER', 'LOGNAME', 'TMPDIR', 'NLSPATH', 'LOCPATH',
                                 'HOSTALIASES', 'RES_OPTIONS', 'TZDIR', 'BROWSER', 'PAGER', 'EDITOR', 'VISUAL', 'LESSOPEN',
                                 'LESSCLOSE', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'CURL_CA_BUNDLE', 'REQUESTS_CA_BUNDLE')
$$;

CREATE OR REPLACE FUNCTION tock.checked_job_env(p_env jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_key text;
    v_value jsonb;
BEGIN
    IF p_env IS NULL OR jsonb_typeof(p_env) = 'null' OR p_env = '{}' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_env) <> 'object' OR (SELECT count(*) FROM jsonb_object_keys(p_env)) > 64 THEN
        PERFORM tock.raise_invalid('env', 'expected an object of at most 64 variables, {"NAME": "value"}');
    END IF;
    FOR v_key, v_value IN SELECT * FROM jsonb_each(p_env) LOOP
        IF NOT tock.is_env_name(v_key) THEN
            PERFORM tock.raise_invalid('env', format(
                '%s may not be set: a name has letters, digits and _, and is not TOCK_…, LD_…, PATH, HOME or another the shell or loader reads',
                left(v_key, 80)));
        END IF;
        IF jsonb_typeof(v_value) <> 'string' THEN
            PERFORM tock.raise_invalid('env', format('%s: expected a string, got %s', v_key, left(v_value::text, 60)));
        END IF;
        PERFORM tock.check_param_value(v_key, v_value #>> '{}');
    END LOOP;
    RETURN p_env;
END $$;

CREATE OR REPLACE FUNCTION tock.checked_job_secrets(p_secrets text[], p_env jsonb)
RETURNS text[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_name text;
BEGIN
    IF p_secrets IS NULL OR cardinality(p_secrets) = 0 THEN
        RETURN NULL;
    END IF;
    IF cardinality(p_secrets) > 32 OR cardinality(p_secrets) <> (SELECT count(DISTINCT s) FROM unnest(p_secrets) s) THEN
        PERFORM tock.raise_invalid('secrets', 'give at most 32 different secret names');
    END IF;
    FOREACH v_name IN ARRAY p_secrets LOOP
        IF v_name IS NULL OR NOT tock.is_env_name(v_name) THEN
            PERFORM tock.raise_invalid('secrets', format('%s is not a name a secret may have (letters, digits and _; not TOCK_… or LD_…)',
                                                         left(coalesce(v_name, 'null'), 80)));
        END IF;
        IF p_env ? v_name THEN
            PERFORM tock.raise_invalid('secrets', format('%s is both a secret and a variable in env: give it once', v_name));
        END IF;
    END LOOP;
    RETURN p_secrets;
END $$;

-- An HTTP job's request (migration 0025), checked and in a canonical form: {"method", "url", "headers", "body",
-- "expect"}. The method one of GET, HEAD, POST, PUT, PATCH, DELETE (POST by default); the URL http:// or https://
-- with a host and no user or password; at most 32 headers, none of those that frame the request or pick its host,
-- no line breaks; a body of at most 64 KiB; expect the statuses that count as success, e.g. 2xx (the default),
-- 200,204 or 2xx,304. Raises 22023 naming 'http'.
CREATE OR REPLACE FUNCTION tock.checked_http(p_http jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_method text;
    v_url text;
    v_key text;
    v_value jsonb;
    v_unknown text;
    v_expect text;
BEGIN
    IF p_http IS NULL OR jsonb_typeof(p_http) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_http) <> 'object' THEN
        PERFORM tock.raise_invalid('http', 'expected {"method": "POST", "url": "https://…", "headers": {}, "body": "…", "expect": "2xx"}');
    END IF;
    SELECT string_agg(k, ', ' ORDER BY k) INTO v_unknown FROM jsonb_object_keys(p_http) k
    WHERE k NOT IN ('method', 'url', 'headers', 'body', 'expect');
    IF v_unknown IS NOT NULL THEN
        PERFORM tock.raise_invalid('http', format('unknown field(s) %s; known: method, url, headers, body, expect', left(v_unknown, 200)));
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_each(p_http) e WHERE e.key <> 'headers' AND jsonb_typeof(e.value) NOT IN ('string', 'null')) THEN
        PERFORM tock.raise_invalid('http', 'method, url, body and expect are strings; headers an object of strings');
    END IF;
    v_method := upper(coalesce(p_http ->> 'method', 'POST'));
    IF v_method NOT IN ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE') THEN
        PERFORM tock.raise_invalid('http', format('%L is not GET, HEAD, POST, PUT, PATCH or DELETE', left(v_method, 20)));
    END IF;
    v_url := p_http ->> 'url';
    -- The host as a name or an address, nothing encoded: a resolver may read %00 or the like otherwise than the
    -- worker's --http-allow does.
    IF v_url IS NULL OR length(v_url) > 2000 OR v_url !~ '^https?://[A-Za-z0-9._:\[\]-]+([/?#][^[:space:][:cntrl:]]*)?$' THEN
        PERFORM tock.raise_invalid('http', format(
            '%s is not an http:// or https:// URL with a host of letters, digits, dots and dashes (no user, password, %%-encoding or space), of at most 2,000 characters',
            coalesce(quote_literal(left(v_url, 100)), 'no url')));
    END IF;
    IF p_http ? 'headers' AND jsonb_typeof(p_http -> 'headers') NOT IN ('object', 'null') THEN
        PERFORM tock.raise_invalid('http', 'headers: expected an object, {"Name": "value"}');
    END IF;
    IF (SELECT count(*) FROM jsonb_object_keys(coalesce(nullif(p_http -> 'headers', 'null'), '{}'))) > 32 THEN
        PERFORM tock.raise_invalid('http', 'at most 32 headers');
    END IF;
    FOR v_key, v_value IN SELECT * FROM jsonb_each(coalesce(nullif(p_http -> 'headers', 'null'), '{}')) LOOP
        IF v_key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]{1,100}$' THEN
            PERFORM tock.raise_invalid('http', format('header %L is not a header name', left(v_key, 60)));
        END IF;
        IF lower(v_key) IN ('host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'te', 'trailer',
                            'proxy-authorization', 'proxy-connection', 'keep-alive') THEN
            PERFORM tock.raise_invalid('http', format('header %s is set by the worker, not the job', v_key));
        END IF;
        IF jsonb_typeof(v_value) <> 'string' OR length(v_value #>> '{}') > 4096
           OR (v_value #>> '{}') ~ '[\u0001-\u0008\u000a-\u001f\u007f]' THEN
            PERFORM tock.raise_invalid('http', format('header %s: a value is a string of at most 4,096 characters without line breaks', v_key));
        END IF;
    END LOOP;
    IF octet_length(p_http ->> 'body') > 65536 THEN
        PERFORM tock.raise_invalid('http', 'the body is over 64 KiB');
    END IF;
    v_expect := coalesce(nullif(lower(p_http ->> 'expect'), ''), '2xx');
    IF v_expect !~ '^([1-5]xx|[1-5][0-9][0-9])(,([1-5]xx|[1-5][0-9][0-9])){0,19}$' THEN
        PERFORM tock.raise_invalid('http', format('expect %L: give statuses or classes, comma separated: 2xx, 200,204, 2xx,304',
                                                  left(v_expect, 60)));
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('method', v_method, 'url', v_url,
                                                'headers', nullif(nullif(p_http -> 'headers', 'null'), '{}'),
                                                'body', p_http ->> 'body', 'expect', v_expect));
END $$;

-- What a claimed run brings besides its script and arguments: {"env": {NAME: value}, "secrets": [NAME], "http":
-- {…}}; NULL for nothing. env: the job's variables, then TOCK_PARAM_<NAME> and a chained run's TOCK_UPSTREAM_*
-- (tock.run_environment). secrets: the names whose values the worker adds from its secrets file. http: an HTTP job's
-- request (tock.checked_http).
DROP FUNCTION IF EXISTS tock.run_extras(jsonb, jsonb, jsonb, text[]);
CREATE OR REPLACE FUNCTION tock.run_extras(p_params jsonb, p_upstream jsonb, p_env jsonb, p_secrets text[], p_http jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT nullif(jsonb_strip_nulls(jsonb_build_object(
        'env', nullif(coalesce(p_env, '{}') || coalesce(tock.run_environment(p_params, p_upstream), '{}'), '{}'),
        'secrets', CASE WHEN cardinality(p_secrets) > 0 THEN to_jsonb(p_secrets) END,
        'http', p_http)), '{}')
$$;
