;; memory_bomb: grows its linear memory 1 MiB at a time, touching each new page, until a
;; grow is refused; then it aborts (unreachable), as a C or Rust program does when malloc fails.
;; The sandbox's store limits must refuse the growth at the memory cap and report it.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (local $old i32)
    (loop $more
      (local.set $old (memory.grow (i32.const 16)))
      (if (i32.eq (local.get $old) (i32.const -1))
        (then unreachable))
      ;; Write to the first byte of the new region so the pages are really used.
      (i32.store8 (i32.mul (local.get $old) (i32.const 65536)) (i32.const 1))
      (br $more))))
