;; fs_probe: {"path": "..."} on stdin -> tries to read that file from the first preopened
;; directory (WASI fd 3) and reports {"opened": true, "content": "..."} or
;; {"opened": false, "errno": N} (8 = EBADF: nothing was granted; 63 = EPERM or
;; 76 = ENOTCAPABLE: the path escapes the grant; 44 = ENOENT). A test probe for the sandbox's
;; filesystem isolation: WASI has no ambient filesystem, so without a grant there is nothing to
;; open a path against.
;; The path must not contain escapes, and the file's content is echoed verbatim (keep it plain).
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "{\"opened\":false,\"errno\":")
  (data (i32.const 288) "{\"opened\":true,\"content\":\"")
  (data (i32.const 320) "\"}\n")
  (data (i32.const 328) "}\n")
  (data (i32.const 336) "\"path\"")
  (data (i32.const 384) "fs_probe: input must be a JSON object with a string field \"path\" (no escapes)\n")

  (func $fail
    (call $write (i32.const 2) (i32.const 384) (i32.const 78))
    (call $proc_exit (i32.const 2)))

  ;; Memory map: 0-7 iovec, 8-11 byte count, 16-47 digit scratch, 256-1023 constant strings,
  ;; 1024- stdin (the memory grows a page at a time while input keeps coming).
  (global $IN i32 (i32.const 1024))

  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func $write_u32 (param $n i32)
    (local $p i32)
    (local.set $p (i32.const 48))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digits (local.get $n)))
    (call $write (i32.const 1) (local.get $p) (i32.sub (i32.const 48) (local.get $p))))

  ;; Reads all of stdin to $IN; returns its length.
  (func $read_all (result i32)
    (local $len i32) (local $end i32)
    (block $done
      (loop $more
        (local.set $end (i32.add (global.get $IN) (local.get $len)))
        (if (i32.gt_u (i32.add (local.get $end) (i32.const 4096))
                      (i32.mul (memory.size) (i32.const 65536)))
          (then (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (call $fail)))))
        (i32.store (i32.const 0) (local.get $end))
        (i32.store (i32.const 4) (i32.sub (i32.mul (memory.size) (i32.const 65536)) (local.get $end)))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)) (then (call $fail)))
        (br_if $done (i32.eqz (i32.load (i32.const 8))))
        (local.set $len (i32.add (local.get $len) (i32.load (i32.const 8))))
        (br $more)))
    (local.get $len))

  (func $is_ws (param $c i32) (result i32)
    (i32.or (i32.eq (local.get $c) (i32.const 32))
            (i32.and (i32.ge_u (local.get $c) (i32.const 9)) (i32.le_u (local.get $c) (i32.const 13)))))

  (func $skip_ws (param $i i32) (param $end i32) (result i32)
    (block $d
      (loop $l
        (br_if $d (i32.ge_u (local.get $i) (local.get $end)))
        (br_if $d (i32.eqz (call $is_ws (i32.load8_u (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $i))

  ;; Finds the quoted key stored at $key ($klen bytes, quotes included) and the ':' after it;
  ;; returns the index of the value's opening quote's successor, after checking it is a string.
  (func $string_value (param $key i32) (param $klen i32) (param $start i32) (param $end i32) (result i32)
    (local $i i32) (local $k i32)
    (local.set $i (local.get $start))
    (block $found
      (loop $scan
        (if (i32.gt_u (i32.add (local.get $i) (local.get $klen)) (local.get $end)) (then (call $fail)))
        (local.set $k (i32.const 0))
        (block $mismatch
          (loop $cmp
            (br_if $found (i32.eq (local.get $k) (local.get $klen)))
            (br_if $mismatch (i32.ne (i32.load8_u (i32.add (local.get $i) (local.get $k)))
                                     (i32.load8_u (i32.add (local.get $key) (local.get $k)))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $cmp)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (local.set $i (call $skip_ws (i32.add (local.get $i) (local.get $klen)) (local.get $end)))
    (if (i32.ge_u (local.get $i) (local.get $end)) (then (call $fail)))
    (if (i32.ne (i32.load8_u (local.get $i)) (i32.const 58)) (then (call $fail)))
    (local.set $i (call $skip_ws (i32.add (local.get $i) (i32.const 1)) (local.get $end)))
    (if (i32.ge_u (local.get $i) (local.get $end)) (then (call $fail)))
    (if (i32.ne (i32.load8_u (local.get $i)) (i32.const 34)) (then (call $fail)))
    (i32.add (local.get $i) (i32.const 1)))

  (func $refused (param $errno i32)
    (call $write (i32.const 1) (i32.const 256) (i32.const 24))
    (call $write_u32 (local.get $errno))
    (call $write (i32.const 1) (i32.const 328) (i32.const 2))
    (call $proc_exit (i32.const 0)))

  (func (export "_start")
    (local $end i32) (local $path i32) (local $i i32) (local $errno i32) (local $fd i32)
    (local $buf i32) (local $n i32)
    (local.set $end (i32.add (global.get $IN) (call $read_all)))
    (local.set $path (call $string_value (i32.const 336) (i32.const 6) (global.get $IN) (local.get $end)))
    (local.set $i (local.get $path))
    (block $closed
      (loop $chars
        (if (i32.ge_u (local.get $i) (local.get $end)) (then (call $fail)))
        (br_if $closed (i32.eq (i32.load8_u (local.get $i)) (i32.const 34)))
        (if (i32.eq (i32.load8_u (local.get $i)) (i32.const 92)) (then (call $fail)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $chars)))
    ;; Is anything preopened at fd 3? (the prestat lands in the digit scratch, unused yet)
    (local.set $errno (call $fd_prestat_get (i32.const 3) (i32.const 16)))
    (if (local.get $errno) (then (call $refused (local.get $errno))))
    ;; rights: FD_READ (bit 1) only; the opened fd lands at 12.
    (local.set $errno
      (call $path_open (i32.const 3) (i32.const 0) (local.get $path)
        (i32.sub (local.get $i) (local.get $path)) (i32.const 0) (i64.const 2) (i64.const 0)
        (i32.const 0) (i32.const 12)))
    (if (local.get $errno) (then (call $refused (local.get $errno))))
    (local.set $fd (i32.load (i32.const 12)))
    ;; Read up to 4 KiB of the file after the input.
    (local.set $buf (i32.add (local.get $end) (i32.const 16)))
    (if (i32.gt_u (i32.add (local.get $buf) (i32.const 4096)) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (call $fail)))))
    (i32.store (i32.const 0) (local.get $buf))
    (i32.store (i32.const 4) (i32.const 4096))
    (local.set $errno (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
    (if (local.get $errno) (then (call $refused (local.get $errno))))
    (local.set $n (i32.load (i32.const 8)))
    (call $write (i32.const 1) (i32.const 288) (i32.const 26))
    (call $write (i32.const 1) (local.get $buf) (local.get $n))
    (call $write (i32.const 1) (i32.const 320) (i32.const 3))))
