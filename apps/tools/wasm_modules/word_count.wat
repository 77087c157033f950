;; word_count: {"text": "..."} on stdin -> {"words": N} on stdout.
;;
;; A well-behaved WASI tool for the sandbox. It reads all of stdin, finds the "text" member and
;; counts runs of non-whitespace in it (ASCII whitespace and the \n \t \r \f escapes separate
;; words; any other character, escaped or UTF-8, belongs to a word). It relies on the caller
;; having validated the input against {"type": "object", "properties": {"text": ...},
;; "additionalProperties": false}, so the first "text" token is the key. Bad input: a message on
;; stderr and exit status 2.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "{\"words\":")
  (data (i32.const 272) "}\n")
  (data (i32.const 288) "\"text\"")
  (data (i32.const 320) "word_count: input must be a JSON object with a string field \"text\"\n")

  (func $fail
    (call $write (i32.const 2) (i32.const 320) (i32.const 67))
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

  (func (export "_start")
    (local $end i32) (local $i i32) (local $c i32) (local $ws i32) (local $in_word i32)
    (local $words i32)
    (local.set $end (i32.add (global.get $IN) (call $read_all)))
    (local.set $i (call $string_value (i32.const 288) (i32.const 6) (global.get $IN) (local.get $end)))
    (block $closed
      (loop $chars
        (if (i32.ge_u (local.get $i) (local.get $end)) (then (call $fail)))
        (local.set $c (i32.load8_u (local.get $i)))
        (br_if $closed (i32.eq (local.get $c) (i32.const 34)))
        (local.set $ws (call $is_ws (local.get $c)))
        (if (i32.eq (local.get $c) (i32.const 92))
          (then
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (if (i32.ge_u (local.get $i) (local.get $end)) (then (call $fail)))
            (local.set $c (i32.load8_u (local.get $i)))
            ;; n t r f
            (local.set $ws
              (i32.or (i32.or (i32.eq (local.get $c) (i32.const 110)) (i32.eq (local.get $c) (i32.const 116)))
                      (i32.or (i32.eq (local.get $c) (i32.const 114)) (i32.eq (local.get $c) (i32.const 102)))))
            ;; \uXXXX: skip the four hex digits
            (if (i32.eq (local.get $c) (i32.const 117))
              (then (local.set $i (i32.add (local.get $i) (i32.const 4)))))))
        (if (local.get $ws)
          (then (local.set $in_word (i32.const 0)))
          (else
            (if (i32.eqz (local.get $in_word))
              (then
                (local.set $in_word (i32.const 1))
                (local.set $words (i32.add (local.get $words) (i32.const 1)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $chars)))
    (call $write (i32.const 1) (i32.const 256) (i32.const 9))
    (call $write_u32 (local.get $words))
    (call $write (i32.const 1) (i32.const 272) (i32.const 2))))
