# file: workers/payment_bot.py
"""The specification's payment agent: the push handler of ``charge_fee``, run by a Celery worker.

    oms worker -I examples.workers.payment_bot
    # the same as: celery -A oms worker -Q charge_fee -I examples.workers.payment_bot

(The seed also wraps it in ``hms_agt.Agent("payment_bot")``, from another chapter;
the handler is all the engine needs.)
"""

from hms_act import subscribe


class FakeStripe:
    """Stand-in for the Stripe client: a charge fails for forms whose id ends in 'DECLINED'."""

    def charge(self, form_id):
        return not str(form_id).endswith("DECLINED")


stripe = FakeStripe()


@subscribe("charge_fee")
def handle_payment(task):
    ok = stripe.charge(task.payload["form_id"])
    return "success" if ok else "fail"
