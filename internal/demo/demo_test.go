package demo

import (
	"context"
	"testing"

	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

func TestDemoTableFollowsItsFormula(t *testing.T) {
	ctx := context.Background()
	pool, _ := testenv.Pool(t)
	if err := CreateTable(ctx, pool, 20000); err != nil {
		t.Fatal(err)
	}
	var n, nullAge, nullCity int
	var maxResidual float64
	err := pool.QueryRow(ctx, `select count(*), count(*) - count(age), count(*) - count(city),
		max(abs(y - (2*x1 - 3*x2 + x1*x3 + 1.5*sin(3*x4)
		  + case city when 'oslo' then 1 when 'lima' then -1 when 'pune' then 0.5
		              when 'kyiv' then -0.5 when 'nome' then 2 else 0 end
		  + 0.02*(coalesce(age, 49) - 50))))
		from pgtrain_demo`).Scan(&n, &nullAge, &nullCity, &maxResidual)
	if err != nil {
		t.Fatal(err)
	}
	if n != 20000 {
		t.Fatalf("%d rows, want 20000", n)
	}
	if nullAge < 700 || nullAge > 1300 || nullCity < 200 || nullCity > 600 {
		t.Fatalf("NULL ages %d (want about 5%%), NULL cities %d (want about 2%%)", nullAge, nullCity)
	}
	if maxResidual > 0.1001 {
		t.Fatalf("largest residual %.4f exceeds the noise bound 0.1", maxResidual)
	}
	v, err := MeanLoss(ctx, pool)
	if err != nil || v < 5 || v > 9 {
		t.Fatalf("variance of y = %v (%v), want about 6.8", v, err)
	}
	if _, err := messages.ParseJobSpec(Spec(3)); err != nil {
		t.Fatalf("the demo spec does not parse: %v", err)
	}
}
