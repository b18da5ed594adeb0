-- a database made by syncclass at schema version 10 (before courses), dumped with
-- sqlite3's iterdump: the migration test upgrades it. Teacher wang's key: AgBcjX0jccbHiFicliYn7RGCCbAurTNip2oy8EGQcVo
-- lessons: 6wF8vH9T_pA (ended, recorded), LkcQy9yqcTA (scheduled, classroom link replaced once)
PRAGMA user_version = 10;
BEGIN TRANSACTION;
CREATE TABLE accounts (
            name       TEXT PRIMARY KEY,
            key_hash   BLOB NOT NULL UNIQUE,
            created_at REAL NOT NULL
        );
INSERT INTO "accounts" VALUES('wang',X'9856CF55EDDBD31D04DC9B760BA542FB75CB7536D3EBE54528F5829014BD765B',1.79649055492338156694e+09);
CREATE TABLE attendance (
            lesson_id TEXT NOT NULL,
            classroom TEXT NOT NULL,
            joined_at REAL NOT NULL,
            left_at   REAL
        );
INSERT INTO "attendance" VALUES('6wF8vH9T_pA','石门小学',1764900010.0,1764902000.0);
CREATE TABLE audit (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            at        REAL NOT NULL,
            actor     TEXT NOT NULL,
            action    TEXT NOT NULL,
            lesson_id TEXT,
            detail    TEXT NOT NULL DEFAULT ''
        );
INSERT INTO "audit" VALUES(1,1.79649055492637395856e+09,'wang','lesson_created','6wF8vH9T_pA','三年级数学 · 分数');
CREATE TABLE chat_messages (
            lesson_id TEXT NOT NULL,
            sender    TEXT NOT NULL,
            text      TEXT NOT NULL,
            at        REAL NOT NULL
        );
INSERT INTO "chat_messages" VALUES('6wF8vH9T_pA','石门小学','老师好',1764900020.0);
CREATE TABLE classroom_events (
            lesson_id TEXT NOT NULL,
            classroom TEXT NOT NULL,
            kind      TEXT NOT NULL,
            at        REAL NOT NULL
        );
CREATE TABLE lessons (
            id             TEXT PRIMARY KEY,
            title          TEXT NOT NULL,
            state          TEXT NOT NULL,
            max_classrooms INTEGER NOT NULL,
            record         INTEGER NOT NULL,
            created_at     REAL NOT NULL,
            started_at     REAL,
            ended_at       REAL
        , teacher TEXT NOT NULL DEFAULT '', owner TEXT NOT NULL DEFAULT 'teacher', link_generation INTEGER NOT NULL DEFAULT 0, keep_chat INTEGER NOT NULL DEFAULT 0, origin_generation INTEGER NOT NULL DEFAULT 0, source_url TEXT, source_secret BLOB);
INSERT INTO "lessons" VALUES('6wF8vH9T_pA','三年级数学 · 分数','ended',20,1,1764900001.0,1764900002.0,1764900003.0,'王老师','wang',0,1,0,NULL,NULL);
INSERT INTO "lessons" VALUES('LkcQy9yqcTA','四年级语文','scheduled',30,0,1764900004.0,NULL,NULL,'','teacher',1,0,0,NULL,NULL);
CREATE TABLE quality_samples (
            lesson_id    TEXT NOT NULL,
            classroom    TEXT NOT NULL,
            at           REAL NOT NULL,
            grade        TEXT NOT NULL,
            loss         REAL NOT NULL,
            jitter_ms    REAL NOT NULL,
            rtt_ms       REAL,
            bitrate_kbps REAL NOT NULL,
            freezes      INTEGER NOT NULL
        , link_state TEXT, estimate_kbps REAL, path TEXT);
CREATE TABLE recordings (
            lesson_id  TEXT PRIMARY KEY REFERENCES lessons (id),
            state      TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at   REAL,
            duration_s REAL,
            size_bytes INTEGER NOT NULL DEFAULT 0,
            public     INTEGER NOT NULL DEFAULT 0,
            details    TEXT NOT NULL DEFAULT '{}',
            error      TEXT
        , public_stage INTEGER NOT NULL DEFAULT 0);
INSERT INTO "recordings" VALUES('6wF8vH9T_pA','ready',1764900001.0,1764902000.0,2400.0,123456,1,'{"main": "camera.webm", "files": ["camera.webm"]}',NULL,0);
CREATE INDEX lessons_created_at ON lessons (created_at);
CREATE INDEX attendance_lesson ON attendance (lesson_id, joined_at);
CREATE INDEX classroom_events_lesson ON classroom_events (lesson_id, at);
CREATE INDEX quality_samples_lesson ON quality_samples (lesson_id, at);
CREATE INDEX audit_lesson ON audit (lesson_id, id);
CREATE INDEX chat_messages_lesson ON chat_messages (lesson_id, at);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('audit',1);
COMMIT;
